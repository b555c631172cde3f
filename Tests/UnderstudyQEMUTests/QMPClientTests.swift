import Foundation
import Testing
import UnderstudyHarness
import UnderstudySystem
@testable import UnderstudyQEMU
#if canImport(Glibc)
import Glibc
#endif

/// The client against a scripted QEMU on a unix socket: what bytes a prepared command puts on
/// the wire, and how one that is not executed next is withdrawn. (QEMU's own answer to a
/// withdrawal is checked against a real QEMU in `QEMUCheckpointSourceTests`.)
@Suite struct QMPClientTests {
    /// One value handed from another thread.
    private final class Handoff<Value>: @unchecked Sendable {
        private let condition = NSCondition()
        private var value: Value?

        func set(_ new: Value) {
            condition.lock()
            value = new
            condition.broadcast()
            condition.unlock()
        }

        func wait(timeout: Duration) -> Value? {
            let deadline = Date(timeIntervalSinceNow: timeout.seconds)
            condition.lock()
            defer { condition.unlock() }
            while value == nil, condition.wait(until: deadline) {}
            return value
        }
    }

    /// The test's end of the connection: QEMU's side, driven by hand.
    private final class ScriptedQEMU {
        let fd: Int32
        let client: QMPClient

        init(directory: String) throws {
            let path = "\(directory)/qmp.sock"
            let listener = try UnixSocket.listen(at: path, backlog: 1)
            defer { close(listener) }
            let accepted = Handoff<Int32>()
            let thread = Thread {
                let fd = accept(listener, nil, nil)
                accepted.set(fd)
                guard fd >= 0 else { return }
                Self.send(fd, #"{"QMP": {"version": {}, "capabilities": []}}"# + "\n")
                _ = Self.receive(fd, count: #"{"execute":"qmp_capabilities"}"#.utf8.count + 1)
                Self.send(fd, #"{"return": {}}"# + "\n")
            }
            thread.start()
            client = try QMPClient(socketPath: path, timeout: .seconds(5))
            fd = try #require(accepted.wait(timeout: .seconds(5)))
        }

        deinit { close(fd) }

        /// What the client sent, once `count` bytes arrived or nothing more came for 200 ms.
        func received(count: Int) -> String { Self.receive(fd, count: count) }

        func answer(_ lines: String...) { Self.send(fd, lines.map { $0 + "\n" }.joined()) }

        static func send(_ fd: Int32, _ text: String) {
            let bytes = Array(text.utf8)
            _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
        }

        static func receive(_ fd: Int32, count: Int) -> String {
            var bytes: [UInt8] = []
            while bytes.count < count {
                var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&descriptor, 1, 200) > 0 else { break }
                var chunk = [UInt8](repeating: 0, count: count - bytes.count)
                let n = read(fd, &chunk, chunk.count)
                guard n > 0 else { break }
                bytes += chunk[0..<n]
            }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    private static var save: QMPClient.Command {
        get throws { try QMPClient.Command("xen-save-devices-state", arguments: ["filename": "/run/vm/device-state", "live": false]) }
    }
    /// The save as the client encodes it: sorted keys, slashes as they are.
    private static let saveEncoded = #"{"arguments":{"filename":"/run/vm/device-state","live":false},"execute":"xen-save-devices-state"}"#

    /// Runs `body` (which waits for replies) on a thread of its own while the test plays QEMU.
    private static func inBackground<T: Sendable>(_ body: @escaping @Sendable () throws -> T) -> Handoff<Result<T, any Error>> {
        let done = Handoff<Result<T, any Error>>()
        Thread { done.set(Result { try body() }) }.start()
        return done
    }

    @Test func aPreparedCommandIsSentButForItsLastByteAndThenRunsOnThatByte() throws {
        try withTemporaryDirectory("qmp-prepare") { directory in
            let qemu = try ScriptedQEMU(directory: directory)
            try qemu.client.prepare(Self.save)
            #expect(qemu.received(count: Self.saveEncoded.utf8.count) == String(Self.saveEncoded.dropLast()))

            let client = qemu.client
            let replies = Self.inBackground { try client.execute([try Self.save]).events.map(\.name) }
            #expect(qemu.received(count: 3) == "}\n", "only the last byte (and a newline QEMU reads after the command)")
            qemu.answer(#"{"timestamp": {"seconds": 1, "microseconds": 0}, "event": "STOP"}"#, #"{"return": {}}"#)
            #expect(try #require(replies.wait(timeout: .seconds(5))).get() == ["STOP"])

            // Executed once: the same command again goes whole.
            let again = Self.inBackground { _ = try client.execute([try Self.save]) }
            #expect(qemu.received(count: Self.saveEncoded.utf8.count + 1) == Self.saveEncoded + "\n")
            qemu.answer(#"{"return": {}}"#)
            _ = try #require(again.wait(timeout: .seconds(5))).get()
        }
    }

    @Test func anotherCommandWithdrawsThePreparedOneWhichQEMUMustRefuse() throws {
        try withTemporaryDirectory("qmp-withdraw") { directory in
            let qemu = try ScriptedQEMU(directory: directory)
            let client = qemu.client
            try client.prepare(Self.save)
            _ = qemu.received(count: Self.saveEncoded.utf8.count - 1)

            let status = Self.inBackground { (try client.execute("query-status") as? [String: Any])?["status"] as? String }
            let withdrawal = #","withdrawn":1}"# + "\n"
            let query = #"{"execute":"query-status"}"# + "\n"
            #expect(qemu.received(count: withdrawal.utf8.count + query.utf8.count) == withdrawal + query,
                    "the withdrawal and the command go together")
            qemu.answer(#"{"error": {"class": "GenericError", "desc": "QMP input member 'withdrawn' is unexpected"}}"#,
                        #"{"return": {"status": "running", "running": true}}"#)
            #expect(try #require(status.wait(timeout: .seconds(5))).get() == "running", "the command's own reply, not the withdrawal's")

            // A QEMU that ran the withdrawn command is an error, never taken for the next reply.
            try client.prepare(Self.save)
            _ = qemu.received(count: Self.saveEncoded.utf8.count - 1)
            let stop = Self.inBackground { _ = try client.execute("stop") }
            _ = qemu.received(count: withdrawal.utf8.count + #"{"execute":"stop"}"#.utf8.count + 1)
            qemu.answer(#"{"return": {}}"#, #"{"return": {}}"#)
            let failure = try #require(stop.wait(timeout: .seconds(5)))
            #expect(throws: QEMUError.self) { try failure.get() }
        }
    }

    @Test func preparingAnotherCommandWithdrawsTheFirst() throws {
        try withTemporaryDirectory("qmp-reprepare") { directory in
            let qemu = try ScriptedQEMU(directory: directory)
            let client = qemu.client
            try client.prepare(Self.save)
            try client.prepare(Self.save)
            #expect(qemu.received(count: Self.saveEncoded.utf8.count) == String(Self.saveEncoded.dropLast()), "the same command is prepared once")

            let other = Self.inBackground { try client.prepare(QMPClient.Command("stop")) }
            let withdrawal = #","withdrawn":1}"# + "\n"
            #expect(qemu.received(count: withdrawal.utf8.count) == withdrawal)
            qemu.answer(#"{"error": {"class": "GenericError", "desc": "QMP input member 'withdrawn' is unexpected"}}"#)
            _ = try #require(other.wait(timeout: .seconds(5))).get()
            #expect(qemu.received(count: 17) == #"{"execute":"stop""#)
        }
    }
}
