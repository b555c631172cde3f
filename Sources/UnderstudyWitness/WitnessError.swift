/// Why a witness operation failed.
public enum WitnessError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No endpoint answered: connection refused or timed out, or the reply did not come in time.
    case unreachable(String)
    /// etcd answered with an error: the HTTP status and etcd's message.
    case rejected(String)
    /// The reply was not HTTP, not JSON, or lacked a field etcd always sends.
    case malformedReply(String)
    /// Another node holds the witness key (its value), and kept it until the wait ended.
    case heldBy(String)
    /// Another node claimed the VM after the term this node held: it must not resume (why).
    case superseded(String)
    /// This node's term record could not be read or written.
    case record(String)

    public var description: String {
        switch self {
        case .unreachable(let what): what
        case .rejected(let what): "etcd rejected the request: \(what)"
        case .malformedReply(let what): "malformed reply from etcd: \(what)"
        case .heldBy(let holder): "the witness key is held by \(holder)"
        case .superseded(let why): why
        case .record(let what): "witness term record: \(what)"
        }
    }
}
