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
