import Foundation
import Logging
import UnderstudySystem

/// A spare host's configuration file (`understudy spare --config spare.toml`): its node name and
/// certificates (of the fleet's CA, the one `understudy certs init` made), the registry, and
/// where the backup nodes it starts for claimed VMs listen and keep their replicas.
///
/// ```toml
/// [node]
/// name = "spare-1"                      # this host's certificate name: the primaries' new peer.name
/// certificates = "/etc/understudy/certs" # ca.pem, spare-1.pem, spare-1.key (understudy certs add --node spare-1)
///
/// [fleet]
/// endpoints = ["192.0.2.3:2379"]        # the registry (required); the other [fleet] keys as on a node
/// host = "hv-9"
/// reprotect_after_s = 30                # a VM without its backup this long is claimed
/// max_backups = 4                       # VMs this spare protects at most (default 8)
///
/// [spare]
/// listen_host = "192.0.2.9"             # the address primaries reach this host's backup nodes at
/// port_base = 7400                      # one port per claimed VM: port_base, port_base + 1, ...
/// udp_host = "198.51.100.9"             # optional: its address on the heartbeat datagrams' link (the same ports, UDP)
/// replica_dir = "/dev/shm/understudy-spare"  # replicas, one directory per VM (tmpfs: QEMU maps it as RAM on activation)
/// state_dir = "/var/lib/understudy-spare"    # each VM's backup configuration, log and run directory
/// boot_dir = "/var/lib/understudy/boot"      # kernels and initrds of VMs booted from a kernel, by file name
/// tap_prefix = "usp"                    # activation TAPs: <prefix><slot>n<nic> (bridge them as the VMs' networks need)
///
/// [log]
/// level = "notice"
/// ```
public struct SpareConfiguration: Sendable {
    public var source: String
    public var nodeName: String
    public var certificates: String
    /// The registry, this host's name and capacity limits (`fleet.max_backups` bounds the slots).
    public var fleet: FleetConfiguration
    public var reprotectAfter: Duration
    public var listenHost: String
    public var portBase: UInt16
    /// The address of this host's backup nodes' heartbeat datagrams (each on its slot's port);
    /// nil: they have no second heartbeat path, and their primaries use the replication link only.
    public var udpHost: String?
    public var replicaDirectory: String
    public var stateDirectory: String
    public var bootDirectory: String?
    public var tapPrefix: String
    public var logLevel: Logger.Level?
    /// How many VMs this spare protects at once: one port and one set of TAPs each.
    public var slots: Int { fleet.maxBackups ?? 8 }

    static let knownKeys: Set<String> = [
        "node.name", "node.certificates", "log.level", "fleet.reprotect_after_s",
        "spare.listen_host", "spare.udp_host", "spare.port_base", "spare.replica_dir", "spare.state_dir", "spare.boot_dir", "spare.tap_prefix",
    ]

    public init(contentsOfFile path: String) throws(ConfigurationError) {
        try self.init(document: TOMLDocument(contentsOfFile: path))
    }

    public init(document d: TOMLDocument) throws(ConfigurationError) {
        try d.rejectUnknownKeys(Self.knownKeys.union(FleetConfiguration.knownKeys))
        source = d.source
        nodeName = try d.requiredString("node.name")
        certificates = try d.requiredString("node.certificates")
        replicaDirectory = try d.requiredString("spare.replica_dir")
        stateDirectory = try d.requiredString("spare.state_dir")
        guard let fleet = try FleetConfiguration(document: d, certificates: certificates, node: nodeName, witnessServerName: "witness",
                                                 vmMemoryBytes: 1 << 30, replicaDirectory: replicaDirectory) else {
            throw ConfigurationError(source: d.source, line: nil, key: "fleet.endpoints",
                                     message: "missing: a spare watches the fleet registry in etcd at these endpoints (HOST:PORT, TLS)")
        }
        self.fleet = fleet
        reprotectAfter = .seconds(try d.integer("fleet.reprotect_after_s", in: 1...86_400) ?? 30)
        listenHost = try d.requiredString("spare.listen_host")
        if !Self.isReachable(listenHost) {
            throw d.failure("spare.listen_host", "\(listenHost.debugDescription) is not an address primaries can reach: give this host's address on the replication network")
        }
        udpHost = try d.string("spare.udp_host")
        if let udpHost, !Self.isReachable(udpHost) {
            // The primary checks each datagram's source against this address: it must be one.
            throw d.failure("spare.udp_host", "\(udpHost.debugDescription) is not an address primaries can reach: give this host's address on the heartbeat datagrams' network")
        }
        let ports = (fleet.maxBackups ?? 8)
        portBase = UInt16(try d.requiredInteger("spare.port_base", in: 1...Int64(65_535 - max(0, ports - 1))))
        bootDirectory = try d.string("spare.boot_dir")
        tapPrefix = try d.string("spare.tap_prefix") ?? "usp"
        // <prefix><slot>n<nic>: a slot takes up to 3 digits and the NIC one, within 15 characters.
        if tapPrefix.isEmpty || tapPrefix.utf8.count > 10 || tapPrefix.contains(where: { !$0.isASCII || !($0.isLetter || $0.isNumber || $0 == "-") }) {
            throw d.failure("spare.tap_prefix", "\(tapPrefix.debugDescription): 1 to 10 letters, digits or '-' (TAP names are <prefix><slot>n<nic>, 15 characters at most)")
        }
        if fleet.maxBackups == 0 {
            throw d.failure("fleet.max_backups", "0: a spare that may take no VM protects nothing")
        }
        logLevel = try d.oneOf("log.level", Logger.Level.self)
    }

    /// One address of this host (not every address, not a path or a bracketed form).
    private static func isReachable(_ host: String) -> Bool {
        !Endpoint.isWildcard(host) && !host.contains(where: { $0.isWhitespace || $0 == "/" || $0 == "[" })
    }
}
