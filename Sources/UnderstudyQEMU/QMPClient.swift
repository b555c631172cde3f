import CUnderstudyShims
import Foundation
import UnderstudySystem
#if canImport(Glibc)
import Glibc
#endif

/// A blocking client for QEMU's machine protocol over a unix socket: one JSON object per line.
/// Commands are answered in order; asynchronous events arriving in between are skipped (the
/// agent asks for state with commands such as query-status instead).
///
/// QEMU reads this socket one byte per turn of its monitor thread's loop (about 5 µs a byte
/// here), so a command of 140 bytes starts about 0.7 ms after it was sent. A command whose
/// moment matters (the checkpoint's save, which ends an epoch that output waits on) can be sent
/// ahead of time but for its last byte (`prepare`): executing it then sends one byte. QEMU runs
/// nothing until an object is complete, so a prepared command that is not executed next is
/// withdrawn by completing it with a member QEMU refuses before running anything (an error reply,
/// nothing done).
public final class QMPClient: @unchecked Sendable {
    private let fd: Int32
    private var buffer: [UInt8] = []
    private let lock = NSLock()
    /// The whole encoding of the command QEMU holds all but the last byte of (`prepare`).
    private var prepared: [UInt8]?
    /// Completes a prepared command into one QEMU refuses without running it ("QMP input member
    /// ... is unexpected"): any object ends with a value, so a further member always parses.
    private static let withdrawal = Array(#","withdrawn":1}"#.utf8) + [UInt8(ascii: "\n")]

    /// Connects, reads the greeting and enters command mode. Retries until `timeout` while
    /// QEMU is still creating the socket.
    public init(socketPath: String, timeout: Duration = .seconds(10)) throws(QEMUError) {
        let deadline = ContinuousClock.now + timeout
        var connected: Int32 = -1
        var lastErrno: Int32 = 0
        while connected < 0 {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw .qmp("socket: \(String(cString: strerror(errno)))") }
            if UnixSocket.connect(fd, path: socketPath) == 0 {
                connected = fd
                break
            }
            lastErrno = errno
            close(fd)
            guard ContinuousClock.now < deadline else {
                throw .qmp("cannot connect to \(socketPath): \(String(cString: strerror(lastErrno)))")
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
        fd = connected
        let greeting = try readMessage()
        guard greeting.isGreeting else { throw .qmp("unexpected greeting \(greeting.object)") }
        _ = try execute("qmp_capabilities")
    }

    deinit { close(fd) }

    /// A command as QEMU is sent it (one JSON object, sorted keys, so that equal commands have
    /// equal bytes). Encoding takes 30–80 µs here (JSONSerialization), so a command sent every
    /// checkpoint is made once and kept.
    public struct Command: Sendable {
        public let name: String
        /// The JSON object, without the newline.
        let bytes: [UInt8]

        public init(_ name: String, arguments: [String: Any]? = nil) throws(QEMUError) {
            var request: [String: Any] = ["execute": name]
            if let arguments { request["arguments"] = arguments }
            guard let data = try? JSONSerialization.data(withJSONObject: request, options: [.sortedKeys, .withoutEscapingSlashes]) else {
                throw .qmp("cannot encode \(name)")
            }
            self.name = name
            bytes = [UInt8](data)
        }
    }

    /// Runs a command and returns its "return" value; a QMP error becomes `QEMUError.qmp`.
    @discardableResult
    public func execute(_ command: String, arguments: [String: Any]? = nil) throws(QEMUError) -> Any {
        do {
            return try execute([Command(command, arguments: arguments)]).values[0]
        } catch let error as QEMUError {
            throw error
        } catch {
            throw .qmp("\(command): \(error)")
        }
    }

    /// An asynchronous event QEMU sent while commands ran: its name and QEMU's wall-clock time.
    public struct Event: Sendable {
        public let name: String
        /// Seconds since the epoch, to the microsecond.
        public let timestamp: Double
    }

    /// How long the VM was stopped: from QEMU's STOP to its RESUME event (QEMU's clock), when
    /// both are among `events` in that order. QEMU sends STOP once the vCPUs are stopped and
    /// RESUME just before it restarts them.
    public static func pause(in events: [Event]) -> Duration? {
        guard let stop = events.first(where: { $0.name == "STOP" }),
              let resume = events.last(where: { $0.name == "RESUME" }), resume.timestamp >= stop.timestamp else { return nil }
        return .microseconds(Int64(((resume.timestamp - stop.timestamp) * 1e6).rounded()))
    }

    /// The replies to `execute`: each command's "return" value, and the events that came meanwhile.
    public struct Replies {
        public var values: [Any]
        public var events: [Event]
    }

    /// Another descriptor to watch while the replies are awaited: `onReadable` runs once, on the
    /// caller's thread, when it first becomes readable (before the next reply is read).
    public struct Watch {
        public let fd: Int32
        public let onReadable: () throws -> Void
        public init(fd: Int32, onReadable: @escaping () throws -> Void) {
            self.fd = fd
            self.onReadable = onReadable
        }
    }

    /// Sends several commands at once and then reads their replies in order: QEMU runs them one
    /// after another, and the checkpoint pause saves a round trip per command. `afterReply(i)`
    /// runs as soon as command `i` succeeded, while QEMU may still be working on the next one.
    /// Stops at the first error (later commands may have run; their replies are drained, and so
    /// they are when `afterReply` or the watch fails).
    @discardableResult
    public func execute(_ commands: [Command], watching watch: Watch? = nil,
                        afterReply: (Int) throws -> Void = { _ in }) throws -> Replies {
        lock.lock()
        defer { lock.unlock() }
        var encoded = commands.map(\.bytes)
        var bytes: [UInt8] = []
        let withdrawing: Bool
        if let prepared {
            self.prepared = nil
            withdrawing = encoded.first != prepared
            if withdrawing {
                bytes = Self.withdrawal
            } else {
                bytes = [prepared.last!, UInt8(ascii: "\n")]
                encoded.removeFirst()
            }
        } else {
            withdrawing = false
        }
        for command in encoded { bytes += command + [UInt8(ascii: "\n")] }
        try write(bytes, for: commands[0].name)
        var replies = Replies(values: [], events: [])
        if withdrawing { replies.events = try readWithdrawalReply() }
        var failure: QEMUError?
        var callbackError: Error?
        var pending = watch.map { watch in
            Watch(fd: watch.fd) {
                // A failing callback must not leave later replies unread in the stream.
                do { try watch.onReadable() } catch { callbackError = callbackError ?? error }
            }
        }
        while replies.values.count < commands.count {
            let message = try readMessage(watching: &pending)
            let command = commands[replies.values.count].name
            switch message.kind {
            case .event(let event):
                replies.events.append(event)
            case .failure(let description):
                if failure == nil { failure = QEMUError.qmp("\(command) failed: \(description)") }
                replies.values.append(NSNull())
            case .reply(let value):
                replies.values.append(value)
                if failure == nil && callbackError == nil {
                    do { try afterReply(replies.values.count - 1) } catch { callbackError = error }
                }
            case .unexpected:
                throw QEMUError.qmp("unexpected reply to \(command): \(message.object)")
            }
        }
        // The caller's own error explains a failure it caused (a save failed on purpose) better.
        if let callbackError { throw callbackError }
        if let failure { throw failure }
        return replies
    }

    /// Sends all of `command` but its last byte, so that executing it later sends one byte (see
    /// the type's notes). Replaces a command prepared before and never executed.
    public func prepare(_ command: Command) throws {
        lock.lock()
        defer { lock.unlock() }
        guard command.bytes != prepared else { return }
        if prepared != nil {
            prepared = nil
            try write(Self.withdrawal, for: command.name)
            _ = try readWithdrawalReply()
        }
        // Recorded before the write: if only part of it arrived, the next execute still completes
        // what QEMU holds into something it refuses.
        prepared = command.bytes
        try write(Array(command.bytes.dropLast()), for: command.name)
    }

    /// Reads the reply to a withdrawal, which comes before those of commands sent after it, and
    /// returns the events before it. QEMU refused the command unless it answered success.
    private func readWithdrawalReply() throws(QEMUError) -> [Event] {
        var events: [Event] = []
        while true {
            let message = try readMessage()
            switch message.kind {
            case .event(let event): events.append(event)
            case .failure: return events
            case .reply, .unexpected: throw .qmp("QEMU ran a withdrawn command: \(message.object)")
            }
        }
    }

    private func write(_ bytes: [UInt8], for command: String) throws(QEMUError) {
        var offset = 0
        while offset < bytes.count {
            // MSG_NOSIGNAL: a dead QEMU must surface as an error here, not as SIGPIPE killing the agent.
            let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw .qmp("write \(command): \(String(cString: strerror(errno)))") }
            offset += n
        }
    }

    private func readMessage() throws(QEMUError) -> QMPMessage {
        var nothing: Watch?
        return try readMessage(watching: &nothing)
    }

    private func readMessage(watching watch: inout Watch?) throws(QEMUError) -> QMPMessage {
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                return try QMPMessage(line: line)
            }
            if let waiting = watch {
                var descriptors = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: waiting.fd, events: Int16(POLLIN), revents: 0)]
                guard poll(&descriptors, 2, -1) >= 0 else {
                    if errno == EINTR { continue }
                    throw .qmp("poll: \(String(cString: strerror(errno)))")
                }
                if descriptors[1].revents != 0 {
                    watch = nil
                    try? waiting.onReadable()  // cannot throw: execute wraps it and keeps the error
                    continue
                }
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = read(fd, &chunk, chunk.count)
            guard n > 0 else { throw .qmp(n == 0 ? "QEMU closed the QMP connection" : "read: \(String(cString: strerror(errno)))") }
            buffer.append(contentsOf: chunk[0..<n])
        }
    }
}
