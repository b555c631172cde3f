import UnderstudySystem

/// Where the witness is and how long a claim on it lasts without renewal.
public struct WitnessConfiguration: Sendable, Equatable {
    /// etcd client endpoints (plain http), tried in order until one answers.
    public var endpoints: [Endpoint]
    /// The lease TTL asked for. etcd grants whole seconds and may raise short ones (with its
    /// default election timeout, anything under 2 s becomes 2 s): the granted TTL is what counts.
    public var leaseTTL: Duration
    /// How long one request to one endpoint may take, connection included.
    public var requestTimeout: Duration

    public init(endpoints: [Endpoint], leaseTTL: Duration = .seconds(2), requestTimeout: Duration = .milliseconds(500)) {
        precondition(!endpoints.isEmpty, "a witness needs at least one etcd endpoint")
        precondition(leaseTTL > .zero && requestTimeout > .zero)
        self.endpoints = endpoints
        self.leaseTTL = leaseTTL
        self.requestTimeout = requestTimeout
    }

    /// The witness key of a VM; its value names the node that may act for it.
    public static func key(forVM id: String) -> String { "/understudy/\(id)/active" }
}

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

    public var description: String {
        switch self {
        case .unreachable(let what): what
        case .rejected(let what): "etcd rejected the request: \(what)"
        case .malformedReply(let what): "malformed reply from etcd: \(what)"
        case .heldBy(let holder): "the witness key is held by \(holder)"
        }
    }
}

/// The result of a claim on the witness key.
public enum ClaimOutcome: Sendable, Equatable {
    /// The key now names this node and lives as long as the lease.
    case acquired
    /// Another node's claim stands: the key's current value.
    case heldBy(String)
}
