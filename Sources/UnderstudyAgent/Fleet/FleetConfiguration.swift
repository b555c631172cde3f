import Foundation
import UnderstudySystem
import UnderstudyTransport
#if canImport(Glibc)
import Glibc
#endif

/// The `[fleet]` table: this node publishes its VM's status and its host's capacity to the fleet
/// registry in etcd (`FleetPublisher`), under a lease, so that `understudy fleet status` shows
/// every VM of the fleet and a dead node's entries vanish by themselves.
///
/// ```toml
/// [fleet]
/// endpoints = ["192.0.2.3:2379"]        # etcd (HTTP/JSON gateway over TLS, this node's certificate); turns the registry on
/// server_name = "witness"               # the name in etcd's certificate (default: witness.server_name)
/// host = "hv-1"                         # this host's name in the fleet (default: the hostname)
/// lease_ttl_s = 5                       # a dead node's entries vanish this long after its last renewal
/// publish_ms = 1000                     # republish this often (and within a quarter of it when the role or state changes)
/// max_primaries = 8                     # VMs this host may run; absent: memory decides alone
/// max_backups = 8                       # replicas this host may keep; absent: replica space decides alone
/// slot_memory_mib = 1024                # what one more VM needs, in memory or replica space (default: vm.memory_mib)
/// ```
public struct FleetConfiguration: Sendable, Equatable {
    /// etcd client endpoints, tried in order until one answers.
    public var endpoints: [Endpoint]
    /// TLS to etcd with this node's certificate; nil: plain HTTP, for tests of the HTTP layer only.
    public var tls: TLSConfiguration?
    /// This host's name in the fleet (a key component: no '/').
    public var host: String
    /// The TTL asked for the lease the node's entries hang on (etcd may grant more).
    public var leaseTTL: Duration
    /// How often the entries are written again (numbers such as lag change all the time).
    public var publishPeriod: Duration
    public var maxPrimaries: Int?
    public var maxBackups: Int?
    /// The memory (for a primary) or replica space (for a backup) one more VM needs.
    public var slotMemoryBytes: UInt64
    /// Where replicas live (`backup.replica_dir`): its file system's free space bounds the backups; nil: memory does.
    public var replicaDirectory: String?
    /// How long one request to one endpoint may take.
    public var requestTimeout: Duration

    static let knownKeys: Set<String> = [
        "fleet.endpoints", "fleet.server_name", "fleet.host", "fleet.lease_ttl_s", "fleet.publish_ms",
        "fleet.max_primaries", "fleet.max_backups", "fleet.slot_memory_mib",
    ]

    public init(endpoints: [Endpoint], tls: TLSConfiguration?, host: String, leaseTTL: Duration = .seconds(5),
                publishPeriod: Duration = .seconds(1), maxPrimaries: Int? = nil, maxBackups: Int? = nil, slotMemoryBytes: UInt64,
                replicaDirectory: String? = nil, requestTimeout: Duration = .milliseconds(500)) {
        precondition(!endpoints.isEmpty, "the fleet registry needs at least one etcd endpoint")
        precondition(leaseTTL > .zero && publishPeriod > .zero && requestTimeout > .zero && slotMemoryBytes > 0)
        self.endpoints = endpoints
        self.tls = tls
        self.host = host
        self.leaseTTL = leaseTTL
        self.publishPeriod = publishPeriod
        self.maxPrimaries = maxPrimaries
        self.maxBackups = maxBackups
        self.slotMemoryBytes = slotMemoryBytes
        self.replicaDirectory = replicaDirectory
        self.requestTimeout = requestTimeout
    }

    /// The table as the node's file gives it; nil when the file has none of its keys (`fleet.drills_at_once` alone is the drills'), so no registry.
    /// - Parameters:
    ///   - certificates, node: this node's credentials (`node.certificates`, `node.name`).
    ///   - witnessServerName: `witness.server_name`, the default name of etcd's certificate.
    ///   - vmMemoryBytes: the default slot size, this node's VM's memory.
    init?(document d: TOMLDocument, certificates: String, node: String, witnessServerName: String, vmMemoryBytes: UInt64,
          replicaDirectory: String?) throws(ConfigurationError) {
        // `fleet.drills_at_once` belongs to the drills (`DrillConfiguration`), which need no registry.
        guard d.keys.contains(where: Self.knownKeys.contains) else { return nil }
        guard let texts = try d.strings("fleet.endpoints") else {
            let first = d.keys.first(where: Self.knownKeys.contains)
            throw ConfigurationError(source: d.source, line: first.flatMap { d.line(of: $0) }, key: "fleet.endpoints",
                                     message: "missing: the [fleet] table publishes to etcd at these endpoints (HOST:PORT, TLS)")
        }
        guard !texts.isEmpty else { throw d.failure("fleet.endpoints", "empty: give at least one etcd endpoint (HOST:PORT)") }
        var endpoints: [Endpoint] = []
        for text in texts {
            guard !text.hasPrefix("http://") else {
                throw d.failure("fleet.endpoints", "\"\(text)\": the registry is reached over TLS with client certificates; write HOST:PORT")
            }
            do {
                endpoints.append(try Endpoint(parsing: text.replacingOccurrences(of: "https://", with: "")))
            } catch {
                throw d.failure("fleet.endpoints", "\(error)")
            }
        }
        let host = try d.string("fleet.host") ?? Self.hostName()
        if let problem = Self.problem(withHost: host) { throw d.failure("fleet.host", problem) }
        let serverName = try d.string("fleet.server_name") ?? witnessServerName
        self.init(endpoints: endpoints, tls: TLSConfiguration(directory: certificates, node: node, peer: serverName), host: host,
                  leaseTTL: .seconds(try d.integer("fleet.lease_ttl_s", in: 2...600) ?? 5),
                  publishPeriod: .milliseconds(try d.integer("fleet.publish_ms", in: 100...60_000) ?? 1000),
                  maxPrimaries: try d.integer("fleet.max_primaries", in: 0...100_000).map { Int($0) },
                  maxBackups: try d.integer("fleet.max_backups", in: 0...100_000).map { Int($0) },
                  slotMemoryBytes: try d.integer("fleet.slot_memory_mib", in: 16...1_048_576).map { UInt64($0) << 20 } ?? vmMemoryBytes,
                  replicaDirectory: replicaDirectory)
        if publishPeriod >= leaseTTL {
            throw d.failure("fleet.publish_ms", "\(publishPeriod.wholeMilliseconds) ms is not shorter than fleet.lease_ttl_s: "
                + "entries would vanish between two publications")
        }
    }

    /// Why `host` cannot name a host in the registry's keys; nil: it can.
    static func problem(withHost host: String) -> String? {
        if host.isEmpty { return "empty: name this host (or leave the key out to use the hostname)" }
        if host.utf8.count > 253 { return "longer than 253 bytes" }
        if host.contains(where: { $0 == "/" || $0.isWhitespace || $0.isNewline }) {
            return "\(host.debugDescription) has a '/' or white space: it is part of etcd keys"
        }
        return nil
    }

    /// This machine's hostname (gethostname).
    static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
