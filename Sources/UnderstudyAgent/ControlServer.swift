import CUnderstudyShims
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import UnderstudyQEMU
import UnderstudyTransport

/// The agent's local control socket: a unix socket, owner-only, answering one-line requests
/// with one JSON document. `understudy status` is its client.
///
/// Requests: `status` → the agent's `AgentStatus` as JSON; a role's commands (`NAME` or
/// `NAME ARGUMENT`) → the JSON the command returns (`ControlReply` for plain outcomes).
public final class ControlServer: @unchecked Sendable {
    /// A command of the running role: takes the request's argument ("" when none), returns JSON.
    public typealias Command = @Sendable (_ argument: String) -> Data

    public let path: String
    private let fd: Int32
    private var thread: JoinableThread?

    /// Listens at `path` (replacing a stale socket, refusing one another agent still serves);
    /// `status` is called for each `status` request, `commands[name]` for the others.
    public init(path: String, status: @escaping @Sendable () -> AgentStatus, commands: [String: Command] = [:]) throws {
        self.path = path
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        fd = try UnixSocket.listen(at: path, backlog: 8)
        let listener = fd
        thread = JoinableThread(name: "control") {
            while true {
                let client = accept(listener, nil, nil)
                if client < 0 {
                    if errno == EINTR { continue }
                    return
                }
                ControlServer.answer(client, status: status, commands: commands)
                Foundation.close(client)
            }
        }
    }

    /// Stops listening and removes the socket.
    public func close() {
        shutdown(fd, Int32(SHUT_RDWR))
        Foundation.close(fd)
        thread?.join()
        thread = nil
        unlink(path)
    }

    private static func answer(_ client: Int32, status: @Sendable () -> AgentStatus, commands: [String: Command]) {
        var request: [UInt8] = []
        var byte: UInt8 = 0
        while request.count < 4096, read(client, &byte, 1) == 1, byte != UInt8(ascii: "\n") { request.append(byte) }
        let line = String(decoding: request, as: UTF8.self)
        let name = String(line.prefix { $0 != " " })
        let argument = String(line.dropFirst(name.count).drop { $0 == " " })
        let reply: Data
        if name == "status" {
            reply = encode(status())
        } else if let command = commands[name] {
            reply = command(argument)
        } else {
            let known = (["status"] + commands.keys.sorted()).joined(separator: ", ")
            reply = encode(ControlReply(ok: false, message: "unknown request \"\(name)\": this agent answers \(known)"))
        }
        let bytes = [UInt8](reply + Data("\n".utf8))
        _ = bytes.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// `value` as JSON with sorted keys (the form every reply takes).
    public static func encode(_ value: some Encodable) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(value)) ?? Data("{\"ok\":false,\"message\":\"cannot encode the reply\"}".utf8)
    }

    /// Sends `request` to the agent at `path` and returns its JSON reply.
    public static func request(_ request: String, path: String) throws -> Data {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TransportError.system(operation: "socket", errno: errno) }
        defer { Foundation.close(fd) }
        guard UnixSocket.connect(fd, path: path) == 0 else {
            throw TransportError.system(operation: "connect to the agent's control socket \(path) (is the agent running?)", errno: errno)
        }
        let line = Array((request + "\n").utf8)
        _ = line.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var reply = Data()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { break }
            reply.append(contentsOf: chunk[0..<n])
        }
        return reply
    }
}

/// The outcome of a control command that has nothing more to report.
public struct ControlReply: Sendable, Codable, Equatable {
    public var ok: Bool
    public var message: String

    public init(ok: Bool, message: String) {
        self.ok = ok
        self.message = message
    }
}

/// What `understudy status` shows.
public struct AgentStatus: Sendable, Codable {
    public var role: String
    public var vm: String
    /// starting, syncing, protecting, serving, stopped, failed
    public var state: String
    public var detail: String?
    public var currentEpoch: UInt64?
    public var committedEpoch: UInt64?
    public var checkpointsPerSecond: Double?
    public var pauseMillisecondsP50: Double?
    public var pauseMillisecondsP99: Double?
    public var pauseMillisecondsMax: Double?
    public var dirtyPagesPerCheckpoint: Double?
    public var rawBytes: Int?
    public var wireBytes: Int?
    public var ackLatencyMillisecondsP50: Double?
    public var ackLatencyMillisecondsP99: Double?
    public var dirtyTracking: String?
    public var syncPages: Int?
    public var sessions: Int?
    /// Output gate: guest frames held for unacknowledged checkpoints, and those dropped because
    /// the buffer was full; when frames may leave (output commit, unprotected, or unsafe).
    public var outputHeldFrames: Int?
    public var outputHeldBytes: Int?
    public var outputDroppedFrames: Int?
    public var outputReleasedFrames: Int?
    /// Frames dropped because this node could not prove it is the active copy (lease not valid).
    public var outputFencedFrames: Int?
    public var outputMode: String?
    /// Initial synchronisation, while it runs: bytes copied and to copy, rate, estimated time left.
    public var syncBytesDone: Int?
    public var syncBytesTotal: Int?
    public var syncBytesPerSecond: Double?
    public var syncSecondsLeft: Double?
    /// Bytes of guest disk writes recorded for the open epoch, not yet captured.
    public var diskPendingBytes: Int?
    /// Guest disk writes and flushes served (NBD).
    public var diskWrites: Int?
    public var diskFlushes: Int?
    /// The checkpoint an activated VM started from.
    public var activatedFromEpoch: UInt64?
    /// Who may be the active copy: the witness and whether this node holds its lease.
    public var fence: String?
    /// Milliseconds since the peer was last heard on any path, and the timeout that loses it.
    public var peerSilentMilliseconds: Double?
    public var heartbeatTimeoutMilliseconds: Double?
    /// synchronous | asynchronous (primary).
    public var protectionMode: String?
    /// The checkpoint interval now and why; the wire bytes per second checkpoints need and the link's budget.
    public var intervalMilliseconds: Double?
    public var intervalReason: String?
    public var checkpointDemandBytesPerSecond: Double?
    public var linkBudgetBytesPerSecond: Double?
    /// Asynchronous mode: the replica's lag now and its peaks' percentiles, the objective,
    /// whether the lag is over it, and the share of each interval the guest is held paused.
    public var lagMilliseconds: Double?
    public var lagMillisecondsP50: Double?
    public var lagMillisecondsP99: Double?
    public var recoveryPointObjectiveMilliseconds: Double?
    public var recoveryPointExceeded: Bool?
    public var guestThrottle: Double?
    /// How the current session brought the backup up to date ("catch-up from checkpoint N" or "full sync: why").
    public var sessionStart: String?
    /// The catch-up checkpoint: pages and disk writes it carried, wire bytes, seconds from capture to acknowledgement.
    public var catchUpPages: Int?
    public var catchUpDiskWrites: Int?
    public var catchUpWireBytes: Int?
    public var catchUpSeconds: Double?
    /// Disk writes kept in the catch-up journal while the backup cannot be reached.
    public var catchUpJournalBytes: Int?

    public init(role: String, vm: String, state: String) {
        self.role = role
        self.vm = vm
        self.state = state
    }
}
