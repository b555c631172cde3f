import Foundation
import Logging
import Synchronization
import Testing
@testable import UnderstudyDisk
import UnderstudyProtocol
import UnderstudySystem
import UnderstudyTransport
#if canImport(Glibc)
import Glibc
#endif

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

// MARK: - Images

/// Creates a raw image of `size` bytes filled by `fill(offset)` (zeroes when nil, without writing).
@discardableResult
func makeImage(_ path: String, size: Int, fill: ((Int) -> UInt8)? = nil) throws -> [UInt8] {
    let bytes = fill.map { fill in (0..<size).map(fill) } ?? [UInt8](repeating: 0, count: size)
    guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else { throw TestFailure("cannot create \(path)") }
    return bytes
}

func contents(_ path: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
}

/// Short descriptions of changes ("bytes 0+4096 ab", "zeroes 4096+512", "flush"), so that a
/// mismatch does not print megabytes.
func summary(_ changes: [DiskChange]) -> [String] {
    changes.map { change in
        switch change {
        case .flush: "flush"
        case .write(let offset, .zeroes(let length)): "zeroes \(offset)+\(length)"
        case .write(let offset, .bytes(let bytes)):
            "bytes \(offset)+\(bytes.count) " + (Set(bytes).count == 1 ? String(bytes[0], radix: 16) : "mixed")
        }
    }
}

/// Applies recorded changes to `initial`, as a backup would apply them to its replica disk.
func replay(_ changes: [DiskChange], onto initial: [UInt8]) -> [UInt8] {
    var image = initial
    for case .write(let offset, let data) in changes {
        switch data {
        case .bytes(let bytes): image.replaceSubrange(Int(offset)..<(Int(offset) + bytes.count), with: bytes)
        case .zeroes(let length): image.replaceSubrange(Int(offset)..<(Int(offset) + length), with: repeatElement(0, count: length))
        }
    }
    return image
}

// MARK: - Observer and logging

/// Records what the server reports, and checks at each report that the image already holds the
/// change (the server must report after the change reached the image). `gate`, when set, makes
/// `diskChanged` wait until `open()` is called.
final class RecordingObserver: DiskWriteObserver, @unchecked Sendable {
    private let condition = NSCondition()
    private var recorded: [DiskChange] = []
    private var problems: [String] = []
    private var gateClosed: Bool
    private var waiting = false
    private let imagePath: String

    init(imagePath: String, gated: Bool = false) {
        self.imagePath = imagePath
        self.gateClosed = gated
    }

    func diskChanged(offset: UInt64, data: DiskWriteData) {
        let expected: [UInt8] = switch data {
        case .bytes(let bytes): bytes
        case .zeroes(let length): [UInt8](repeating: 0, count: length)
        }
        let onImage = Self.read(imagePath, offset: offset, count: expected.count)
        condition.lock()
        if onImage != expected { problems.append("change at \(offset) (\(data.length) bytes) was reported before the image held it") }
        recorded.append(.write(offset: offset, data: data))
        waiting = true
        condition.broadcast()
        while gateClosed { condition.wait() }
        waiting = false
        condition.unlock()
    }

    func diskFlushed() {
        condition.lock()
        recorded.append(.flush)
        condition.unlock()
    }

    var changes: [DiskChange] {
        condition.lock()
        defer { condition.unlock() }
        return recorded
    }

    /// Mismatches between a report and the image at the time of the report.
    var orderingProblems: [String] {
        condition.lock()
        defer { condition.unlock() }
        return problems
    }

    /// Waits until a `diskChanged` call is held at the gate.
    func waitUntilHeld(seconds: Double = 5) -> Bool {
        let deadline = Date(timeIntervalSinceNow: seconds)
        condition.lock()
        defer { condition.unlock() }
        while !waiting { if !condition.wait(until: deadline) { return false } }
        return true
    }

    func open() {
        condition.lock()
        gateClosed = false
        condition.broadcast()
        condition.unlock()
    }

    private static func read(_ path: String, offset: UInt64, count: Int) -> [UInt8] {
        guard let handle = FileHandle(forReadingAtPath: path) else { return [] }
        defer { try? handle.close() }
        try? handle.seek(toOffset: offset)
        return [UInt8]((try? handle.read(upToCount: count)) ?? Data())
    }
}

// MARK: - Running QEMU's tools

/// Runs one of QEMU's tools with a deadline; returns its exit status and what it printed (stdout, then stderr).
func run(_ executable: String, _ arguments: [String], seconds: Int = 20) throws -> (status: Int32, output: String) {
    let result = try HostCommand.execute(executable, arguments, timeout: .seconds(seconds))
    return (result.status, result.stdout + result.stderr)
}

/// The NBD URI QEMU's tools take for an export on a unix socket.
func nbdURI(export: String, socket: String) -> String { "nbd+unix:///\(export)?socket=\(socket)" }

/// Runs qemu-io with one `-c` per command against the export; records an issue when it fails.
@discardableResult
func qemuIO(_ commands: [String], export: String, socket: String, extra: [String] = [],
            sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
    let result = try run("/usr/bin/qemu-io", ["-f", "raw"] + extra + commands.flatMap { ["-c", $0] } + [nbdURI(export: export, socket: socket)])
    #expect(result.status == 0, "qemu-io \(commands): \(result.output)", sourceLocation: sourceLocation)
    // qemu-io reports failed commands (a pattern mismatch, an I/O error) on its output, not always in its status.
    #expect(!result.output.contains("failed") && !result.output.contains("Pattern verification"), "qemu-io \(commands): \(result.output)",
            sourceLocation: sourceLocation)
    return result.output
}

// MARK: - A raw client, for what QEMU's tools never send

/// A bare NBD client over a blocking unix socket with a receive timeout.
final class RawNBDClient {
    let fd: Int32

    init(socketPath: String, receiveTimeoutMilliseconds: Int = 5000) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: \(errno)") }
        guard UnixSocket.connect(fd, path: socketPath) == 0 else {
            let code = errno
            close(fd)
            throw TestFailure("connect \(socketPath): \(String(cString: strerror(code)))")
        }
        var timeout = timeval(tv_sec: receiveTimeoutMilliseconds / 1000, tv_usec: receiveTimeoutMilliseconds % 1000 * 1000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) throws {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + done, $0.count - done, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw TestFailure("send: \(String(cString: strerror(errno)))") }
            done += n
        }
    }

    /// Exactly `count` bytes, or nil when the server closed the connection or the timeout passed first.
    func receive(_ count: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = bytes.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + done, count - done, 0) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return nil }
            done += n
        }
        return bytes
    }

    /// Whether the server closes the connection within the receive timeout (any bytes before are dropped).
    func closedByServer() -> Bool {
        var byte: UInt8 = 0
        while true {
            let n = recv(fd, &byte, 1, 0)
            if n == 0 || (n < 0 && errno == ECONNRESET) { return true }
            if n < 0 && errno != EINTR { return false }
        }
    }

    /// Reads the greeting, sends `clientFlags`, then NBD_OPT_GO for `export`. Returns the export size and flags.
    func handshake(export: String, clientFlags: UInt32 = 3) throws -> (size: UInt64, flags: UInt16) {
        guard let greeting = receive(18), greeting == NBDHandshakeStateMachine.greeting else { throw TestFailure("bad greeting") }
        try send(bigEndian(clientFlags))
        try send(optionBytes(NBDOption.go, goData(name: export)))
        var size: UInt64?
        var flags: UInt16 = 0
        while true {
            guard let header = receive(20) else { throw TestFailure("connection closed during the handshake") }
            let type: UInt32 = header.bigEndianInteger(at: 12)
            let length = Int(header.bigEndianInteger(at: 16, as: UInt32.self))
            let payload = length > 0 ? receive(length) ?? [] : []
            switch type {
            case NBDOptionReply.ack:
                guard let size else { throw TestFailure("no export information before ACK") }
                return (size, flags)
            case NBDOptionReply.info where payload.count >= 12 && payload.bigEndianInteger(at: 0, as: UInt16.self) == NBDInfo.export:
                size = payload.bigEndianInteger(at: 2)
                flags = payload.bigEndianInteger(at: 10)
            case NBDOptionReply.info:
                continue
            default:
                throw TestFailure("option reply 0x\(String(type, radix: 16)): \(String(decoding: payload, as: UTF8.self))")
            }
        }
    }

    /// Sends a request (and `data` after it) and reads its reply header; a READ's data is returned too.
    func request(_ request: NBDRequest, data: [UInt8] = []) throws -> (error: UInt32, data: [UInt8]) {
        try send(requestBytes(request) + data)
        return try reply(to: request)
    }

    func reply(to request: NBDRequest) throws -> (error: UInt32, data: [UInt8]) {
        guard let header = receive(16) else { throw TestFailure("no reply to \(request)") }
        #expect(header.bigEndianInteger(at: 0, as: UInt32.self) == NBDMagic.simpleReply)
        #expect(header.bigEndianInteger(at: 8, as: UInt64.self) == request.handle, "reply carries the request's handle")
        let error: UInt32 = header.bigEndianInteger(at: 4)
        guard error == 0, request.type == NBDCommand.read.rawValue else { return (error, []) }
        guard let data = receive(Int(request.length)) else { throw TestFailure("read reply without its data") }
        return (0, data)
    }
}

// MARK: - Wire bytes

func bigEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.bigEndian) { Array($0) }
}

/// An option as a client sends it: IHAVEOPT, code, length, data.
func optionBytes(_ option: UInt32, _ data: [UInt8] = [], magic: UInt64 = NBDMagic.option) -> [UInt8] {
    bigEndian(magic) + bigEndian(option) + bigEndian(UInt32(data.count)) + data
}

/// The data of NBD_OPT_GO / NBD_OPT_INFO: name length, name, info request count, requests.
func goData(name: String, requests: [UInt16] = [NBDInfo.blockSize]) -> [UInt8] {
    bigEndian(UInt32(name.utf8.count)) + Array(name.utf8) + bigEndian(UInt16(requests.count)) + requests.flatMap { bigEndian($0) }
}

func requestBytes(_ request: NBDRequest, magic: UInt32 = NBDMagic.request) -> [UInt8] {
    bigEndian(magic) + bigEndian(request.flags.rawValue) + bigEndian(request.type) + bigEndian(request.handle)
        + bigEndian(request.offset) + bigEndian(request.length)
}

/// One option reply the server sent.
struct OptionReply: Equatable, CustomStringConvertible {
    var option: UInt32
    var type: UInt32
    var payload: [UInt8]

    var description: String { "reply(option \(option), type 0x\(String(type, radix: 16)), \(payload.count) bytes)" }
    var message: String { String(decoding: payload, as: UTF8.self) }
}

/// Splits a run of option replies; records an issue on a malformed one.
func optionReplies(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> [OptionReply] {
    var replies: [OptionReply] = []
    var offset = 0
    while offset + 20 <= bytes.count {
        let header = Array(bytes[offset..<(offset + 20)])
        #expect(header.bigEndianInteger(at: 0, as: UInt64.self) == NBDMagic.optionReply, sourceLocation: sourceLocation)
        let length = Int(header.bigEndianInteger(at: 16, as: UInt32.self))
        guard offset + 20 + length <= bytes.count else { break }
        replies.append(OptionReply(option: header.bigEndianInteger(at: 8), type: header.bigEndianInteger(at: 12),
                                   payload: Array(bytes[(offset + 20)..<(offset + 20 + length)])))
        offset += 20 + length
    }
    #expect(offset == bytes.count, "trailing bytes after the option replies", sourceLocation: sourceLocation)
    return replies
}

/// Starts a server on a fresh image in `directory`; the export is named "disk".
func startServer(in directory: String, size: Int = 1 << 20, readOnly: Bool = false, fill: ((Int) -> UInt8)? = nil,
                 observed: Bool = true, gated: Bool = false, logger: Logger = Logger(label: "nbd-test", factory: { _ in SwiftLogNoOpLogHandler() }))
    throws -> (server: NBDServer, observer: RecordingObserver, image: String, socket: String) {
    let image = "\(directory)/disk.img"
    let socket = "\(directory)/nbd.sock"
    try makeImage(image, size: size, fill: fill)
    let observer = RecordingObserver(imagePath: image, gated: gated)
    let server = try NBDServer(imagePath: image, socketPath: socket, exportName: "disk", readOnly: readOnly,
                               observer: observed ? observer : nil, logger: logger)
    return (server, observer, image, socket)
}
