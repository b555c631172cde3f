import Foundation
import UnderstudySystem
import UnderstudyTransport

/// How a failover drill decides that the clone has recovered.
public enum DrillProbe: Sendable, Equatable, CustomStringConvertible {
    /// A TCP connection to the guest is accepted, from inside the drill's network namespace.
    case tcp(Endpoint)
    /// The text appears in the clone's serial console (the guest printed it after it resumed).
    case serial(marker: String)
    /// A shell command (`/bin/sh -c`), run inside the drill's network namespace, exits with 0:
    /// the application answered, e.g. `pg_isready -h 10.77.0.2` or a query that reads a row it wrote.
    case exec(command: String)

    /// Parses `tcp:HOST:PORT`, `serial:MARKER` or `exec:COMMAND`.
    public init(parsing text: String) throws(DrillError) {
        if text.hasPrefix("tcp:") {
            do {
                self = .tcp(try Endpoint(parsing: String(text.dropFirst(4))))
            } catch {
                throw DrillError("probe \"\(text)\": \(error)")
            }
        } else if text.hasPrefix("serial:"), text.count > 7 {
            self = .serial(marker: String(text.dropFirst(7)))
        } else if text.hasPrefix("exec:") {
            let command = text.dropFirst(5).trimmingCharacters(in: .whitespaces)
            guard !command.isEmpty else { throw DrillError("probe \"\(text)\": no command after exec:, e.g. \"exec:pg_isready -h 10.77.0.2\"") }
            self = .exec(command: command)
        } else {
            throw DrillError("probe \"\(text)\" is none of tcp:HOST:PORT, serial:MARKER, exec:COMMAND")
        }
    }

    public var description: String {
        switch self {
        case .tcp(let endpoint): "tcp:\(endpoint)"
        case .serial(let marker): "serial:\(marker)"
        case .exec(let command): "exec:\(command)"
        }
    }
}
