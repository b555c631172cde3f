import Foundation

/// Where the preload library that arms dirty tracking inside QEMU is installed.
public enum PreloadLibrary {
    public static let fileName = "libUnderstudyPreload.so"

    /// `UNDERSTUDY_PRELOAD`, then next to the running executable (a SwiftPM build), then the
    /// system locations Deploy/ installs to. Nil when none exists.
    public static func locate() -> String? {
        var candidates: [String] = []
        if let explicit = ProcessInfo.processInfo.environment["UNDERSTUDY_PRELOAD"] { candidates.append(explicit) }
        if let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            candidates.append(((executable as NSString).deletingLastPathComponent as NSString).appendingPathComponent(fileName))
        }
        candidates += ["/usr/local/lib/understudy/\(fileName)", "/usr/lib/understudy/\(fileName)"]
        return candidates.first { FileManager.default.isReadableFile(atPath: $0) }
    }
}
