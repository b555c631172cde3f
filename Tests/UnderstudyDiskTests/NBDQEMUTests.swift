import Foundation
import Logging
import Testing
import UnderstudyHarness
@testable import UnderstudyDisk
import UnderstudyProtocol
import UnderstudySystem
import UnderstudyTestTags
import UnderstudyTransport
#if canImport(Glibc)
import Glibc
#endif

/// The server against QEMU's own NBD client: qemu-io and qemu-img (Debian package qemu-utils)
/// and qemu-system-x86_64 with the arguments `NBDServer.qemuArguments` returns.
@Suite("NBDServer with QEMU", .tags(.vm), .skippedInQuickLoop)
struct NBDQEMUTests {
    static let kib = 1024

    /// /tmp is ext4 here (holes and zero ranges); /dev/shm is tmpfs, which has holes but no zero
    /// range, so WRITE_ZEROES with NO_HOLE falls back to writing zeroes.
    @Test(arguments: ["/tmp", "/dev/shm"])
    func qemuIOCommandsReachTheImageAndTheObserverInOrder(parent: String) throws {
        try withTemporaryDirectory("nbd", in: parent) { dir in
            let initial = [UInt8](repeating: 0x11, count: 1 << 20)
            let started = try startServer(in: dir, fill: { _ in 0x11 })
            defer { started.server.stop() }
            try qemuIO(["write -P 0xab 0 64k", "read -P 0xab 0 64k", "write -z 64k 64k", "write -z -u 128k 64k",
                        "discard 192k 64k", "flush", "write -f -P 0xcd 256k 4k", "read -P 0 64k 192k", "read -P 0x11 260k 764k"],
                       export: "disk", socket: started.socket, extra: ["-t", "writeback"])
            #expect(summary(started.observer.changes) == [
                "bytes 0+65536 ab", "zeroes 65536+65536", "zeroes 131072+65536", "zeroes 196608+65536",
                "flush", // the flush command
                "bytes 262144+4096 cd", "flush", // write -f: FUA
                "flush", // qemu-io closing the image
            ])
            #expect(started.observer.orderingProblems.isEmpty, "\(started.observer.orderingProblems)")
            let image = try contents(started.image)
            #expect(image == replay(started.observer.changes, onto: initial), "replaying the reports gives the image")
            #expect(image[0..<(64 * Self.kib)].allSatisfy { $0 == 0xAB })
            #expect(image[(64 * Self.kib)..<(256 * Self.kib)].allSatisfy { $0 == 0 })
            #expect(image[(256 * Self.kib)..<(260 * Self.kib)].allSatisfy { $0 == 0xCD })
            #expect(image[(260 * Self.kib)...].allSatisfy { $0 == 0x11 })
            // Holes for discard and for write -z -u (which may unmap); write -z asks for NO_HOLE and keeps its blocks.
            #expect(try allocatedBytes(started.image) == (1 << 20) - 128 * Self.kib)
            let statistics = started.server.statistics
            #expect(statistics.writes == 2 && statistics.bytesWritten == 68 * UInt64(Self.kib))
            #expect(statistics.reads >= 3 && statistics.trims == 1 && statistics.zeroes == 2 && statistics.flushes == 2 && statistics.errors == 0, "\(statistics)")
        }
    }

    @Test func qemuImgInfoSeesTheSizeOfTheExport() throws {
        try withTemporaryDirectory("nbd") { dir in
            let started = try startServer(in: dir, size: 3 << 20 + 512)
            defer { started.server.stop() }
            let result = try run("/usr/bin/qemu-img", ["info", "--output=json", "-f", "raw", nbdURI(export: "disk", socket: started.socket)])
            #expect(result.status == 0, "\(result.output)")
            let info = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]
            #expect(info?["virtual-size"] as? Int == 3 << 20 + 512, "\(result.output)")
            #expect(started.observer.changes.isEmpty)
        }
    }

    @Test func qemuImgConvertAndCompareRoundTrip() throws {
        try withTemporaryDirectory("nbd") { dir in
            let size = 4 << 20
            let source = "\(dir)/source.img"
            // Data, a zero region (convert writes it as zeroes), a constant region, data again.
            let original = try makeImage(source, size: size) { offset in
                switch offset >> 20 {
                case 1: 0
                case 2: 0x77
                default: UInt8(truncatingIfNeeded: offset &* 2_654_435_761 >> 13)
                }
            }
            let initial = [UInt8](repeating: 0x55, count: size)
            let started = try startServer(in: dir, size: size, fill: { _ in 0x55 })
            defer { started.server.stop() }
            let uri = nbdURI(export: "disk", socket: started.socket)
            let convert = try run("/usr/bin/qemu-img", ["convert", "-n", "-f", "raw", "-O", "raw", source, uri])
            #expect(convert.status == 0, "\(convert.output)")
            #expect(try contents(started.image) == original, "the export holds the source")
            #expect(replay(started.observer.changes, onto: initial) == original, "the reports rebuild the source from the old content")
            #expect(started.observer.orderingProblems.isEmpty)
            #expect(summary(started.observer.changes).contains { $0.hasPrefix("zeroes 1048576") }, "\(summary(started.observer.changes))")

            let compare = try run("/usr/bin/qemu-img", ["compare", "-f", "raw", "-F", "raw", source, uri])
            #expect(compare.status == 0, "\(compare.output)")
            #expect(compare.output.contains("Images are identical"))
            // And back out through the server's reads.
            let copy = "\(dir)/copy.img"
            let back = try run("/usr/bin/qemu-img", ["convert", "-f", "raw", "-O", "raw", uri, copy])
            #expect(back.status == 0, "\(back.output)")
            #expect(try contents(copy) == original)
            // A difference is found too.
            _ = try qemuIO(["write -P 0x99 3m 1"], export: "disk", socket: started.socket)
            let differ = try run("/usr/bin/qemu-img", ["compare", "-f", "raw", "-F", "raw", source, uri])
            #expect(differ.status == 1, "\(differ.output)")
            #expect(differ.output.contains("Content mismatch at offset 3145728"), "\(differ.output)")
        }
    }

    @Test func aReadOnlyExportServesReadsAndQEMURefusesToOpenItForWriting() throws {
        try withTemporaryDirectory("nbd") { dir in
            let started = try startServer(in: dir, size: 65536, readOnly: true, fill: { _ in 0x3C })
            defer { started.server.stop() }
            try qemuIO(["read -P 0x3c 0 64k"], export: "disk", socket: started.socket, extra: ["-r"])
            let write = try run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write 0 4k", nbdURI(export: "disk", socket: started.socket)])
            #expect(write.status != 0 && write.output.contains("Permission denied"), "\(write.output)")
            #expect(try contents(started.image) == [UInt8](repeating: 0x3C, count: 65536))
            #expect(started.observer.changes.isEmpty)
        }
    }

    @Test func anUnknownExportIsExplainedToQEMUAndTheOperator() throws {
        try withTemporaryDirectory("nbd") { dir in
            let log = LogCapture()
            let started = try startServer(in: dir, logger: log.logger)
            defer { started.server.stop() }
            let result = try run("/usr/bin/qemu-io", ["-f", "raw", "-c", "read 0 4k", nbdURI(export: "other", socket: started.socket)])
            #expect(result.status != 0)
            let explanation = DiskError.unknownExport(requested: "other", served: "disk").description
            #expect(result.output.contains(explanation), "\(result.output)")
            #expect(log.waitFor(explanation), "\(log.messages)")
        }
    }

    /// The arguments `qemuArguments` returns, in qemu-system-x86_64 (stopped with -S): the disk
    /// node opens over NBD, and writes through the virtio-blk device's block backend (HMP
    /// qemu-io) reach the image and the observer.
    @Test func qemuSystemAcceptsTheDiskArguments() throws {
        try withTemporaryDirectory("nbd") { dir in
            let started = try startServer(in: dir, fill: { _ in 0x11 })
            defer { started.server.stop() }
            let qmpPath = "\(dir)/qmp.sock"
            let qemu = Process()
            qemu.executableURL = URL(fileURLWithPath: "/usr/bin/qemu-system-x86_64")
            qemu.arguments = ["-nodefaults", "-no-user-config", "-machine", "pc", "-accel", "tcg", "-display", "none", "-S",
                              "-monitor", "none", "-serial", "none", "-qmp", "unix:\(qmpPath),server=on,wait=off"]
                + NBDServer.qemuArguments(socketPath: started.socket, exportName: "disk", nodeName: "disk0")
            let log = "\(dir)/qemu.log"
            #expect(FileManager.default.createFile(atPath: log, contents: nil))
            let logHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            defer { try? logHandle.close() }
            qemu.standardOutput = logHandle
            qemu.standardError = logHandle
            try qemu.run()
            defer {
                if qemu.isRunning { qemu.terminate() }
                qemu.waitUntilExit()
            }
            let qmp = try TestQMPClient(path: qmpPath, qemu: qemu, log: log)
            let blocks = try qmp.execute("query-block") as? [[String: Any]] ?? []
            let inserted = blocks.compactMap { $0["inserted"] as? [String: Any] }
            #expect(inserted.map { $0["node-name"] as? String } == ["disk0"], "\(blocks)")
            #expect(inserted.first?["drv"] as? String == "nbd")
            #expect((inserted.first?["image"] as? [String: Any])?["virtual-size"] as? Int == 1 << 20)

            let backend = "/machine/peripheral-anon/device[0]/virtio-backend"
            // HMP's qemu-io prints its results on QEMU's standard output, not in the reply.
            try qmp.execute("human-monitor-command", ["command-line": "qemu-io -d \(backend) \"write -P 0x5a 4096 8192\""])
            try qmp.execute("human-monitor-command", ["command-line": "qemu-io -d \(backend) \"read -P 0x5a 4096 8192\""])
            try qmp.execute("quit")
            qemu.waitUntilExit()
            let output = try String(contentsOfFile: log, encoding: .utf8)
            #expect(output.contains("wrote 8192/8192 bytes at offset 4096"), "\(output)")
            #expect(output.contains("read 8192/8192 bytes at offset 4096"), "\(output)")
            #expect(!output.contains("Pattern verification failed"), "\(output)")

            let changes = started.observer.changes
            #expect(summary(changes).first == "bytes 4096+8192 5a", "\(summary(changes))")
            #expect(summary(changes).dropFirst().allSatisfy { $0 == "flush" }, "\(summary(changes))")
            var expected = [UInt8](repeating: 0x11, count: 1 << 20)
            expected.replaceSubrange(4096..<12288, with: repeatElement(0x5A, count: 8192))
            #expect(try contents(started.image) == expected)
            #expect(started.server.statistics.connections >= 1)
        }
    }
}

/// Bytes the file system has allocated for `path`.
private func allocatedBytes(_ path: String) throws -> Int {
    var info = stat()
    guard stat(path, &info) == 0 else { throw TestFailure("stat \(path): \(errno)") }
    return Int(info.st_blocks) * 512
}

/// Just enough QMP for one test: connect (QEMU creates the socket shortly after starting),
/// negotiate, run commands and return their "return" values.
private final class TestQMPClient {
    private let fd: Int32
    private var buffer: [UInt8] = []

    init(path: String, qemu: Process, log: String) throws {
        let deadline = Date(timeIntervalSinceNow: 10)
        var connected: Int32 = -1
        while connected < 0 {
            let candidate = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            if UnixSocket.connect(candidate, path: path) == 0 {
                connected = candidate
            } else {
                close(candidate)
                guard qemu.isRunning, Date() < deadline else {
                    throw TestFailure("QEMU did not open QMP: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
                }
                usleep(10_000)
            }
        }
        fd = connected
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = try readObject()
        try execute("qmp_capabilities")
    }

    deinit { close(fd) }

    @discardableResult
    func execute(_ command: String, _ arguments: [String: Any]? = nil) throws -> Any {
        var request: [String: Any] = ["execute": command]
        if let arguments { request["arguments"] = arguments }
        let line = [UInt8](try JSONSerialization.data(withJSONObject: request)) + [0x0A]
        guard line.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == line.count else {
            throw TestFailure("QMP send failed")
        }
        while true {
            let reply = try readObject()
            if reply["event"] != nil { continue }
            guard let value = reply["return"] else { throw TestFailure("QMP \(command): \(reply)") }
            return value
        }
    }

    private func readObject() throws -> [String: Any] {
        while true {
            if let newline = buffer.firstIndex(of: 0x0A) {
                let line = Data(buffer[..<newline])
                buffer.removeSubrange(...newline)
                guard let object = try JSONSerialization.jsonObject(with: line) as? [String: Any] else { throw TestFailure("QMP sent \(line)") }
                return object
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = recv(fd, &chunk, chunk.count, 0)
            guard n > 0 else { throw TestFailure("QMP connection ended") }
            buffer += chunk[0..<n]
        }
    }
}
