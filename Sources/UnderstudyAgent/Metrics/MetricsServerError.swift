import Foundation
import UnderstudySystem
import UnderstudyTransport

/// The metrics endpoint could not listen where `metrics.listen` says.
public struct MetricsServerError: Error, Sendable, CustomStringConvertible {
    public var address: Endpoint
    public var reason: TransportError

    public var description: String {
        let why = switch reason {
        case .system(_, let code): String(cString: strerror(code))
        default: "\(reason)"
        }
        return "cannot serve metrics on \(address) (metrics.listen): \(why)"
    }
}
