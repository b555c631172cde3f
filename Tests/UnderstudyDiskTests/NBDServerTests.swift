import Foundation
import Logging
import Testing
import UnderstudyHarness
@testable import UnderstudyDisk
import UnderstudyProtocol
import UnderstudySystem
import UnderstudyTransport
#if canImport(Glibc)
import Glibc
#endif

/// The server over its socket, driven by a bare client that can send what QEMU never would.
@Suite("NBDServer")
struct NBDServerTests {
    static let quiet = Logger(label: "nbd-test", factory: { _ in SwiftLogNoOpLogHandler() })

    // MARK: Starting and stopping

    @Test func theSocketIsOwnerOnlyAndRemovedOnStop() throws {
        try withTemporaryDirectory("nbd") { dir in
            let started = try startServer(in: dir)
            var info = stat()
            #expect(lstat(started.socket, &info) == 0)
            #expect(info.st_mode & S_IFMT == S_IFSOCK)
            #expect(info.st_mode & 0o777 == 0o600)
            #expect(started.server.size == 1 << 20)
            started.server.stop()
            #expect(!FileManager.default.fileExists(atPath: started.socket))
            started.server.stop()
        }
    }

    @Test func aStaleSocketIsReplacedButALiveOneOrAnotherFileIsNot() throws {
        try withTemporaryDirectory("nbd") { dir in
            let image = "\(dir)/disk.img"
            let socketPath = "\(dir)/nbd.sock"
            try makeImage(image, size: 4096)
            // A socket nobody listens on any more, as a killed server leaves it.
            let stale = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            #expect(UnixSocket.bind(stale, path: socketPath) == 0)
            close(stale)
            let server = try NBDServer(imagePath: image, socketPath: socketPath, exportName: "disk", observer: nil, logger: Self.quiet)
            defer { server.stop() }
            let client = try RawNBDClient(socketPath: socketPath)
            #expect(try client.handshake(export: "disk").size == 4096)

            #expect(throws: DiskError.listen(.inUse(socketPath))) {
                _ = try NBDServer(imagePath: image, socketPath: socketPath, exportName: "disk", observer: nil, logger: Self.quiet)
            }
            #expect(throws: DiskError.listen(.notASocket(image))) {
                _ = try NBDServer(imagePath: image, socketPath: image, exportName: "disk", observer: nil, logger: Self.quiet)
            }
            #expect(try contents(image).count == 4096, "the image was left alone")
        }
    }

    @Test func unusableImagesAndNamesAreExplained() throws {
        try withTemporaryDirectory("nbd") { dir in
            let socketPath = "\(dir)/nbd.sock"
            let missing = "\(dir)/missing.img"
            let error = #expect(throws: DiskError.missingImage(path: missing)) {
                _ = try NBDServer(imagePath: missing, socketPath: socketPath, exportName: "disk", observer: nil, logger: Self.quiet)
            }
            #expect(error?.description == "disk image \(missing) does not exist: create it first (qemu-img create -f raw \(missing) SIZE) or fix the configured path")
            try makeImage("\(dir)/empty.img", size: 0)
            #expect(throws: DiskError.invalidImage(path: "\(dir)/empty.img", reason: "it is empty; give it a size first (qemu-img resize -f raw \(dir)/empty.img SIZE)")) {
                _ = try NBDServer(imagePath: "\(dir)/empty.img", socketPath: socketPath, exportName: "disk", observer: nil, logger: Self.quiet)
            }
            #expect(throws: DiskError.invalidImage(path: "/dev/null", reason: "it is neither a regular file nor a block device")) {
                _ = try NBDServer(imagePath: "/dev/null", socketPath: socketPath, exportName: "disk", observer: nil, logger: Self.quiet)
            }
            #expect(throws: DiskError.io(operation: "open", path: dir, errno: EISDIR)) {
                _ = try NBDServer(imagePath: dir, socketPath: socketPath, exportName: "disk", observer: nil, logger: Self.quiet)
            }
            try makeImage("\(dir)/disk.img", size: 512)
            #expect(throws: DiskError.self) {
                _ = try NBDServer(imagePath: "\(dir)/disk.img", socketPath: socketPath, exportName: "a\0b", observer: nil, logger: Self.quiet)
            }
            #expect(throws: DiskError.listen(.system(operation: "bind \(dir)/\(String(repeating: "s", count: 120))", errno: ENAMETOOLONG))) {
                _ = try NBDServer(imagePath: "\(dir)/disk.img", socketPath: "\(dir)/\(String(repeating: "s", count: 120))", exportName: "disk",
                                  observer: nil, logger: Self.quiet)
            }
            #expect(!FileManager.default.fileExists(atPath: socketPath), "failed starts leave no socket behind")
        }
    }

    @Test func dataRangesSkipHolesAndCoverEveryWrittenByte() throws {
        try withTemporaryDirectory("nbd") { dir in
            let path = "\(dir)/sparse.img"
            #expect(FileManager.default.createFile(atPath: path, contents: nil))
            #expect(truncate(path, 64 << 20) == 0)
            let image = try DiskImage(path: path, readOnly: false)
            #expect(image.dataRanges().isEmpty, "a fresh sparse image has no data")
            try [UInt8](repeating: 5, count: 10).withUnsafeBytes { try image.write($0, at: 3 << 20) }
            try [UInt8](repeating: 6, count: 4096).withUnsafeBytes { try image.write($0, at: (64 << 20) - 4096) }
            let ranges = image.dataRanges()
            #expect(ranges.count == 2)
            #expect(ranges.contains { $0.contains(3 << 20) && $0.contains((3 << 20) + 9) })
            #expect(ranges.contains { $0.contains((64 << 20) - 1) })
            #expect(ranges.reduce(0) { $0 + $1.count } < 4 << 20, "holes are skipped")
        }
    }

    @Test func theImageRefusesRangesPastItsEndAndNoticesTruncation() throws {
        try withTemporaryDirectory("nbd") { dir in
            let path = "\(dir)/disk.img"
            try makeImage(path, size: 4096, fill: { _ in 7 })
            let image = try DiskImage(path: path, readOnly: false)
            #expect(image.size == 4096)
            let beyond = " of 2 bytes at offset 4095, beyond the image's 4096 bytes,"
            #expect(throws: DiskError.io(operation: "write" + beyond, path: path, errno: ENOSPC)) {
                try [UInt8](repeating: 1, count: 2).withUnsafeBytes { try image.write($0, at: 4095) }
            }
            #expect(throws: DiskError.io(operation: "zero" + beyond, path: path, errno: ENOSPC)) {
                try image.zero(offset: 4095, length: 2, punchHole: true)
            }
            var buffer = [UInt8](repeating: 0, count: 2)
            #expect(throws: DiskError.io(operation: "read" + beyond, path: path, errno: EINVAL)) {
                try buffer.withUnsafeMutableBytes { try image.read(into: $0, at: 4095) }
            }
            #expect(throws: DiskError.io(operation: "zero of 1 bytes at offset \(UInt64.max), beyond the image's 4096 bytes,", path: path, errno: ENOSPC)) {
                try image.zero(offset: .max, length: 1, punchHole: false)
            }
            #expect(truncate(path, 1000) == 0)
            #expect(throws: DiskError.invalidImage(path: path, reason: "it ends before offset 1000; it was truncated while being served")) {
                try buffer.withUnsafeMutableBytes { try image.read(into: $0, at: 999) }
            }
            let readOnly = try DiskImage(path: path, readOnly: true)
            #expect(readOnly.size == 1000)
            #expect(throws: DiskError.io(operation: "write", path: path, errno: EBADF)) {
                try [UInt8](repeating: 1, count: 2).withUnsafeBytes { try readOnly.write($0, at: 0) }
            }
        }
    }

    @Test func stopClosesConnectedClientsPromptly() throws {
        try withTemporaryDirectory("nbd") { dir in
            let started = try startServer(in: dir)
            let idle = try RawNBDClient(socketPath: started.socket)
            #expect(try idle.handshake(export: "disk").size == 1 << 20)
            // A second client still in the handshake.
            let negotiating = try RawNBDClient(socketPath: started.socket)
            #expect(negotiating.receive(18) != nil)
            let clock = ContinuousClock()
            let took = clock.measure { started.server.stop() }
            #expect(took < .seconds(2), "stop took \(took)")
            #expect(idle.closedByServer())
            #expect(negotiating.closedByServer())
            #expect(!FileManager.default.fileExists(atPath: started.socket))
            #expect(started.server.statistics.connections == 2)
        }
    }

    // MARK: Requests

    @Test func writesAreReportedInOrderAndReadBack() throws {
        try withTemporaryDirectory("nbd") { dir in
            let started = try startServer(in: dir)
            defer { started.server.stop() }
            let client = try RawNBDClient(socketPath: started.socket)
            let (size, flags) = try client.handshake(export: "disk")
            #expect(size == 1 << 20)
            #expect(flags == 0x6D)
            let data = (0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            #expect(try client.request(NBDRequest(.write, handle: 1, offset: 4096, length: 8192), data: data).error == 0)
            #expect(try client.request(NBDRequest(.read, handle: 2, offset: 4096, length: 8192)) == (0, data))
            #expect(try client.request(NBDRequest(.write, flags: .fua, handle: 3, offset: 0, length: 3), data: [1, 2, 3]).error == 0)
            #expect(try client.request(NBDRequest(.trim, handle: 4, offset: 8192, length: 4096)).error == 0)
            #expect(try client.request(NBDRequest(.writeZeroes, flags: .noHole, handle: 5, offset: 4096, length: 100)).error == 0)
            #expect(try client.request(NBDRequest(.flush, handle: 6, offset: 0, length: 0)).error == 0)
            #expect(try client.request(NBDRequest(.writeZeroes, flags: .fua, handle: 7, offset: 1, length: 1)).error == 0)
            try client.send(requestBytes(NBDRequest(.disconnect, handle: 8, offset: 0, length: 0)))
            #expect(client.closedByServer(), "DISC closes the connection")

            #expect(started.observer.changes == [
                .write(offset: 4096, data: .bytes(data)),
                .write(offset: 0, data: .bytes([1, 2, 3])), .flush,
                .write(offset: 8192, data: .zeroes(length: 4096)),
                .write(offset: 4096, data: .zeroes(length: 100)),
                .flush,
                .write(offset: 1, data: .zeroes(length: 1)), .flush,
            ])
            #expect(started.observer.orderingProblems.isEmpty, "\(started.observer.orderingProblems)")
            var expected = [UInt8](repeating: 0, count: 1 << 20)
            expected.replaceSubrange(4096..<12288, with: data)
            expected.replaceSubrange(0..<3, with: [1, 0, 3])
            expected.replaceSubrange(4096..<4196, with: repeatElement(0, count: 100))
            expected.replaceSubrange(8192..<12288, with: repeatElement(0, count: 4096))
            #expect(try contents(started.image) == expected)
            var statistics = NBDStatistics()
            (statistics.connections, statistics.reads, statistics.bytesRead, statistics.writes, statistics.bytesWritten) = (1, 1, 8192, 2, 8195)
            (statistics.flushes, statistics.trims, statistics.zeroes) = (1, 1, 2)
            let served = started.server.statistics
            #expect(served.flushTime > .zero, "the FLUSH's fdatasync is timed")
            statistics.flushTime = served.flushTime
            #expect(served == statistics)
        }
    }

    @Test func theReplyWaitsUntilTheObserverReturns() throws {
        try withTemporaryDirectory("nbd") { dir in
            let started = try startServer(in: dir, gated: true)
            defer { started.server.stop() }
            let client = try RawNBDClient(socketPath: started.socket, receiveTimeoutMilliseconds: 300)
            _ = try client.handshake(export: "disk")
            let request = NBDRequest(.write, handle: 42, offset: 512, length: 4)
            try client.send(requestBytes(request) + [9, 8, 7, 6])
            #expect(started.observer.waitUntilHeld())
            #expect(try contents(started.image)[512..<516] == [9, 8, 7, 6], "the image holds the write while it is being reported")
            #expect(client.receive(1) == nil, "no reply while the observer has not returned")
            started.observer.open()
            #expect(try client.reply(to: request).error == 0)
            #expect(started.observer.orderingProblems.isEmpty)
        }
    }

    @Test func errorsAreAnsweredAndTheConnectionGoesOn() throws {
        try withTemporaryDirectory("nbd") { dir in
            let started = try startServer(in: dir, size: 65536, fill: { UInt8(truncatingIfNeeded: $0) })
            defer { started.server.stop() }
            let client = try RawNBDClient(socketPath: started.socket)
            _ = try client.handshake(export: "disk")
            let einval = UInt32(EINVAL), enospc = UInt32(ENOSPC)
            #expect(try client.request(NBDRequest(type: 0x4242, handle: 1, offset: 0, length: 4)).error == einval, "unknown command")
            #expect(try client.request(NBDRequest(type: 5, handle: 2, offset: 0, length: 4)).error == einval, "CACHE")
            #expect(try client.request(NBDRequest(.read, handle: 3, offset: 65535, length: 2)).error == einval, "read past the end")
            #expect(try client.request(NBDRequest(.read, handle: 4, offset: 0, length: NBDExport.maximumPayload + 1)).error == einval, "read too long")
            #expect(try client.request(NBDRequest(.trim, handle: 5, offset: 65536, length: 1)).error == einval, "trim past the end")
            // Refused writes still send their data; the server must skip it to stay in step.
            #expect(try client.request(NBDRequest(.write, handle: 6, offset: 65530, length: 10), data: [UInt8](repeating: 0xEE, count: 10)).error == enospc)
            #expect(try client.request(NBDRequest(.write, flags: .noHole, handle: 7, offset: 0, length: 5), data: [UInt8](repeating: 0xEE, count: 5)).error == einval)
            let tooLong = Int(NBDExport.maximumPayload) + 1
            #expect(try client.request(NBDRequest(.write, handle: 8, offset: 0, length: UInt32(tooLong)), data: [UInt8](repeating: 0xEE, count: tooLong)).error == einval)
            #expect(try client.request(NBDRequest(.writeZeroes, handle: 9, offset: 65536, length: 1)).error == enospc, "write zeroes past the end")
            // Still in step: a read returns the image's bytes.
            #expect(try client.request(NBDRequest(.read, handle: 10, offset: 65530, length: 6)) == (0, [250, 251, 252, 253, 254, 255]))
            #expect(started.observer.changes.isEmpty, "refused requests are not reported")
            #expect(try contents(started.image) == (0..<65536).map { UInt8(truncatingIfNeeded: $0) })
            #expect(started.server.statistics.errors == 9)
        }
    }

    @Test func aReadOnlyExportRefusesChanges() throws {
        try withTemporaryDirectory("nbd") { dir in
            let started = try startServer(in: dir, size: 8192, readOnly: true, fill: { _ in 0x11 })
            defer { started.server.stop() }
            let client = try RawNBDClient(socketPath: started.socket)
            #expect(try client.handshake(export: "disk").flags == 0x6F)
            let eperm = UInt32(EPERM)
            #expect(try client.request(NBDRequest(.write, handle: 1, offset: 0, length: 4), data: [1, 2, 3, 4]).error == eperm)
            #expect(try client.request(NBDRequest(.trim, handle: 2, offset: 0, length: 4096)).error == eperm)
            #expect(try client.request(NBDRequest(.writeZeroes, handle: 3, offset: 0, length: 4096)).error == eperm)
            #expect(try client.request(NBDRequest(.read, handle: 4, offset: 0, length: 4)) == (0, [0x11, 0x11, 0x11, 0x11]))
            #expect(try client.request(NBDRequest(.flush, handle: 5, offset: 0, length: 0)).error == 0)
            #expect(try contents(started.image) == [UInt8](repeating: 0x11, count: 8192))
            #expect(started.observer.changes == [.flush])
        }
    }

    // MARK: Broken clients

    @Test func aBadRequestMagicClosesOnlyThatConnection() throws {
        try withTemporaryDirectory("nbd") { dir in
            let log = LogCapture()
            let started = try startServer(in: dir, logger: log.logger)
            defer { started.server.stop() }
            let client = try RawNBDClient(socketPath: started.socket)
            _ = try client.handshake(export: "disk")
            try client.send(requestBytes(NBDRequest(.read, handle: 1, offset: 0, length: 512), magic: 0x2560_9514))
            #expect(client.closedByServer())
            #expect(log.waitFor("request magic is 0x25609514"), "\(log.messages)")
            let next = try RawNBDClient(socketPath: started.socket)
            _ = try next.handshake(export: "disk")
            #expect(try next.request(NBDRequest(.read, handle: 2, offset: 0, length: 512)).error == 0)
        }
    }

    @Test func aClientCutOffMidRequestChangesNothing() throws {
        try withTemporaryDirectory("nbd") { dir in
            let log = LogCapture()
            let started = try startServer(in: dir, size: 8192, logger: log.logger)
            defer { started.server.stop() }
            do {
                let client = try RawNBDClient(socketPath: started.socket)
                _ = try client.handshake(export: "disk")
                try client.send(requestBytes(NBDRequest(.write, handle: 1, offset: 0, length: 4096)) + [UInt8](repeating: 0xAB, count: 1000))
            }
            #expect(log.waitFor("disconnected in the middle of a message"), "\(log.messages)")
            do {
                let client = try RawNBDClient(socketPath: started.socket)
                _ = try client.handshake(export: "disk")
                try client.send(Array(requestBytes(NBDRequest(.read, handle: 2, offset: 0, length: 512)).prefix(10)))
            }
            #expect(log.waitFor("disconnected in the middle of a message", count: 2), "\(log.messages)")
            #expect(started.observer.changes.isEmpty)
            #expect(try contents(started.image) == [UInt8](repeating: 0, count: 8192))
            let client = try RawNBDClient(socketPath: started.socket)
            _ = try client.handshake(export: "disk")
            #expect(try client.request(NBDRequest(.write, handle: 3, offset: 0, length: 1), data: [5]).error == 0)
        }
    }

    @Test func unknownClientFlagsCloseTheConnection() throws {
        try withTemporaryDirectory("nbd") { dir in
            let log = LogCapture()
            let started = try startServer(in: dir, logger: log.logger)
            defer { started.server.stop() }
            let client = try RawNBDClient(socketPath: started.socket)
            #expect(client.receive(18) == NBDHandshakeStateMachine.greeting)
            try client.send(bigEndian(UInt32(1 << 5 | 1)))
            #expect(client.closedByServer())
            #expect(log.waitFor("unknown client flags 0x20"), "\(log.messages)")
        }
    }

    @Test func severalConnectionsWorkAtOnce() throws {
        try withTemporaryDirectory("nbd") { dir in
            let started = try startServer(in: dir)
            defer { started.server.stop() }
            let clients = try (0..<3).map { _ in try RawNBDClient(socketPath: started.socket) }
            for client in clients { _ = try client.handshake(export: "disk") }
            for (index, client) in clients.enumerated() {
                #expect(try client.request(NBDRequest(.write, handle: UInt64(index), offset: UInt64(index) * 4096, length: 1), data: [UInt8(index + 1)]).error == 0)
            }
            for (index, client) in clients.enumerated().reversed() {
                #expect(try client.request(NBDRequest(.read, handle: 9, offset: 0, length: 8193)).data.enumerated()
                    .filter { $0.element != 0 }.map(\.offset) == [0, 4096, 8192], "client \(index) sees every client's writes")
            }
            #expect(started.server.statistics.connections == 3)
        }
    }
}
