#if canImport(Glibc)
import Glibc
#endif

/// Failures of sockets and TLS, each with a sentence an operator can act on.
public enum TransportError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidAddress(String)
    case system(operation: String, errno: Int32)
    case connectFailed(address: String, errno: Int32)
    case timedOut(String)
    /// Loading certificates or keys failed.
    case credentials(String)
    /// The TLS handshake failed; `reason` includes OpenSSL's verification result when there is one.
    case handshakeFailed(peer: String, reason: String)
    case tls(String)
    /// The peer closed the connection (cleanly or not) while we expected more bytes.
    case closed(String)

    public var description: String {
        switch self {
        case .invalidAddress(let what): "invalid address: \(what)"
        case .system(let operation, let code): "\(operation) failed: \(String(cString: strerror(code)))"
        case .connectFailed(let address, let code): "cannot connect to \(address): \(String(cString: strerror(code)))"
        case .timedOut(let what): "timed out: \(what)"
        case .credentials(let what): "TLS credentials: \(what)"
        case .handshakeFailed(let peer, let reason): "TLS handshake with \(peer) failed: \(reason)"
        case .tls(let what): "TLS error: \(what)"
        case .closed(let what): "connection closed: \(what)"
        }
    }
}
