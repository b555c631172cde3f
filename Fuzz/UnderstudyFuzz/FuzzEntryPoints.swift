import Foundation

/// The libFuzzer entry points. One binary holds every target; `UNDERSTUDY_FUZZ_TARGET` picks the
/// one a run exercises, so that one sanitized build serves them all. With
/// `UNDERSTUDY_FUZZ_WRITE_SEEDS=DIR` the binary writes the chosen target's seeds into DIR and exits.
enum FuzzEntryPoints {
    nonisolated(unsafe) static var target: FuzzTarget?

    static func initialize() {
        guard let name = getenv("UNDERSTUDY_FUZZ_TARGET").map({ String(cString: $0) }), let chosen = FuzzTarget.named(name) else {
            let names = FuzzTarget.all.map(\.name).joined(separator: " ")
            fail("set UNDERSTUDY_FUZZ_TARGET to one of: \(names)", status: 2)
        }
        target = chosen
        if let directory = getenv("UNDERSTUDY_FUZZ_WRITE_SEEDS").map({ String(cString: $0) }) {
            for (number, seed) in chosen.seeds().enumerated() {
                let path = "\(directory)/seed-\(number)"
                guard FileManager.default.createFile(atPath: path, contents: Data(seed)) else { fail("cannot write \(path)", status: 1) }
            }
            exit(0)
        }
    }

    private static func fail(_ message: String, status: Int32) -> Never {
        FileHandle.standardError.write(Data("understudy fuzz: \(message)\n".utf8))
        exit(status)
    }
}

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    FuzzEntryPoints.initialize()
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    FuzzEntryPoints.target!.run(bytes)
    return 0
}
