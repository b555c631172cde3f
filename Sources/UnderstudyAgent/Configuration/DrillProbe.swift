import Foundation
import UnderstudySystem
import UnderstudyTransport

/// How a failover drill decides that the clone has recovered.
public enum DrillProbe: Sendable, Equatable, CustomStringConvertible {
    /// A TCP connection to the guest is accepted, from inside the drill's network namespace.
    case tcp(Endpoint)
    /// The text appears in the clone's serial console (the guest printed it after it resumed).
    case serial(marker: String)

    /// Parses `tcp:HOST:PORT` or `serial:MARKER`.
    public init(parsing text: String) throws(DrillError) {
        if text.hasPrefix("tcp:") {
            do {
                self = .tcp(try Endpoint(parsing: String(text.dropFirst(4))))
            } catch {
                throw DrillError("probe \"\(text)\": \(error)")
            }
        } else if text.hasPrefix("serial:"), text.count > 7 {
            self = .serial(marker: String(text.dropFirst(7)))
        } else {
            throw DrillError("probe \"\(text)\" is neither tcp:HOST:PORT nor serial:MARKER")
        }
    }

    public var description: String {
        switch self {
        case .tcp(let endpoint): "tcp:\(endpoint)"
        case .serial(let marker): "serial:\(marker)"
        }
    }
}
