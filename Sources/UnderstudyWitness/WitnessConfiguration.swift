import UnderstudySystem
import UnderstudyTransport

/// Where the witness is and how long a claim on it lasts without renewal.
public struct WitnessConfiguration: Sendable, Equatable {
    /// etcd client endpoints, tried in order until one answers.
    public var endpoints: [Endpoint]
    /// TLS to etcd's client port with this node's certificate (etcd runs with
    /// `--client-cert-auth` and the pair's CA); nil: plain HTTP, for tests only.
    public var tls: TLSConfiguration?
    /// The lease TTL asked for. etcd grants whole seconds and may raise short ones (with its
    /// default election timeout, anything under 2 s becomes 2 s): the granted TTL is what counts.
    public var leaseTTL: Duration
    /// How long one request to one endpoint may take, connection included.
    public var requestTimeout: Duration

    public init(endpoints: [Endpoint], tls: TLSConfiguration?, leaseTTL: Duration = .seconds(2), requestTimeout: Duration = .milliseconds(500)) {
        self.tls = tls
        precondition(!endpoints.isEmpty, "a witness needs at least one etcd endpoint")
        precondition(leaseTTL > .zero && requestTimeout > .zero)
        self.endpoints = endpoints
        self.leaseTTL = leaseTTL
        self.requestTimeout = requestTimeout
    }

    /// The witness key of a VM; its value names the node that may act for it.
    public static func key(forVM id: String) -> String { "/understudy/\(id)/active" }

    /// The VM's term key (no lease): the last claim's `WitnessTerm`, kept after every lease ended.
    public static func termKey(forVM id: String) -> String { "/understudy/\(id)/term" }
}
