import UnderstudySystem
/// What can go wrong in the output gate, each with a sentence an operator can act on.
public enum NetworkError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A system call failed.
    case io(operation: String, detail: String, errno: Int32)
    /// The guest side (QEMU's netdev stream) sent something that is not a frame.
    case malformedFrame(String)
    /// The configuration cannot work (a name too long, a limit out of range).
    case invalidConfiguration(String)
    /// The socket QEMU connects to cannot be listened on (in use, not a socket, a failed call).
    case listen(UnixSocket.ListenError)

    public var description: String {
        switch self {
        case .io(let operation, let detail, let code): "\(operation) \(detail) failed: \(String(cString: strerror(code))) (errno \(code))"
        case .malformedFrame(let what): "malformed frame from the guest NIC: \(what)"
        case .invalidConfiguration(let what): "invalid network configuration: \(what)"
        case .listen(let error): "cannot listen for the guest NIC: \(error)"
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
