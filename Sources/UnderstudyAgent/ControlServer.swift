import CUnderstudyShims
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import UnderstudyQEMU
import UnderstudySystem
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
