import Foundation
import UnderstudyProtocol
import UnderstudyQEMU
import UnderstudyTransport

/// One node's configuration file (TOML), validated at load with errors that name the key.
///
/// ```toml
/// [node]
/// name = "primary"                      # this node; its certificate carries this name
/// certificates = "/etc/understudy/certs" # ca.pem, NAME.pem, NAME.key
///
/// [peer]
/// name = "backup"                       # the other node's certificate name
/// address = "192.0.2.2:7400"            # primary: where the backup listens
///
/// [vm]
/// id = "web-1"
/// memory_mib = 1024
/// vcpus = 2
/// machine = "pc"
/// accelerator = "auto"                  # auto | kvm | tcg
/// kernel = "/var/lib/understudy/web-1/vmlinuz"
/// initrd = "/var/lib/understudy/web-1/initrd.img"
/// cmdline = "console=ttyS0"
/// # disk_image = "/var/lib/understudy/web-1/disk.raw"
/// run_dir = "/run/understudy/web-1"     # QMP, serial log, control socket
///
/// [replication]
/// interval_ms = 25
/// max_epochs_in_flight = 4
/// dirty_tracking = "auto"               # auto | pagemap | compare
///
/// [backup]
/// listen = "0.0.0.0:7400"
/// replica_dir = "/dev/shm/understudy/web-1"  # tmpfs: QEMU maps it as RAM on activation
/// ```
public struct AgentConfiguration: Sendable {
    public var source: String
    public var nodeName: String
    public var certificates: String
    public var peerName: String
    public var peerAddress: Endpoint?
    public var vm: VMDescription
    public var interval: Duration
    public var maxEpochsInFlight: Int
    public var dirtyTracking: DirtyTrackingPreference
    public var listen: Endpoint?
    public var replicaDirectory: String?

    static let knownKeys: Set<String> = [
        "node.name", "node.certificates", "peer.name", "peer.address",
        "vm.id", "vm.memory_mib", "vm.vcpus", "vm.machine", "vm.accelerator", "vm.kernel", "vm.initrd", "vm.cmdline",
        "vm.disk_image", "vm.run_dir", "vm.qemu",
        "replication.interval_ms", "replication.max_epochs_in_flight", "replication.dirty_tracking",
        "backup.listen", "backup.replica_dir",
    ]

    public init(contentsOfFile path: String) throws(ConfigurationError) {
        try self.init(document: TOMLDocument(contentsOfFile: path))
    }

    public init(document d: TOMLDocument) throws(ConfigurationError) {
        try d.rejectUnknownKeys(Self.knownKeys)
        source = d.source
        nodeName = try d.requiredString("node.name")
        certificates = try d.requiredString("node.certificates")
        peerName = try d.requiredString("peer.name")
        peerAddress = try Self.endpoint(d, "peer.address")
        let id = try d.requiredString("vm.id")
        let runDirectory = try d.string("vm.run_dir") ?? "/run/understudy/\(id)"
        vm = VMDescription(
            id: id,
            memoryBytes: UInt64(try d.requiredInteger("vm.memory_mib", in: 16...1_048_576)) << 20,
            vcpus: Int(try d.integer("vm.vcpus", in: 1...64) ?? 1),
            machine: try d.string("vm.machine") ?? "pc",
            accelerator: try d.oneOf("vm.accelerator", VMDescription.Accelerator.self) ?? .auto,
            kernel: try d.string("vm.kernel"), initrd: try d.string("vm.initrd"),
            commandLine: try d.string("vm.cmdline") ?? "console=ttyS0",
            diskImage: try d.string("vm.disk_image"), runDirectory: runDirectory,
            qemuBinary: try d.string("vm.qemu") ?? "qemu-system-x86_64")
        guard vm.kernel != nil || vm.diskImage != nil else {
            throw ConfigurationError(source: d.source, line: nil, key: "vm.kernel", message: "set vm.kernel (with vm.initrd) or vm.disk_image")
        }
        interval = .milliseconds(try d.integer("replication.interval_ms", in: 1...60_000) ?? 25)
        maxEpochsInFlight = Int(try d.integer("replication.max_epochs_in_flight", in: 1...64) ?? 4)
        dirtyTracking = try d.oneOf("replication.dirty_tracking", DirtyTrackingPreference.self) ?? .auto
        listen = try Self.endpoint(d, "backup.listen")
        replicaDirectory = try d.string("backup.replica_dir")
    }

    /// The control socket of the agent for this VM (owner-only).
    public var controlSocket: String { "\(vm.runDirectory)/control.sock" }

    public var tls: TLSConfiguration { TLSConfiguration(directory: certificates, node: nodeName, peer: peerName) }

    public var identity: VMIdentity { VMIdentity(id: vm.id, memorySize: vm.memoryBytes) }

    /// Checks the keys the primary role needs.
    public func primary() throws(ConfigurationError) -> PrimaryConfiguration {
        guard let peerAddress else { throw missing("peer.address", "the primary needs the backup's address") }
        return PrimaryConfiguration(nodeName: nodeName, backup: peerAddress, tls: tls, interval: interval,
                                    maxEpochsInFlight: maxEpochsInFlight)
    }

    /// Checks the keys the backup role needs.
    public func backup() throws(ConfigurationError) -> BackupConfiguration {
        guard let listen else { throw missing("backup.listen", "the backup needs an address to listen on") }
        guard let replicaDirectory else { throw missing("backup.replica_dir", "the backup needs a directory for the replica") }
        return BackupConfiguration(nodeName: nodeName, listen: listen, tls: tls, identity: identity, replicaDirectory: replicaDirectory)
    }

    private func missing(_ key: String, _ why: String) -> ConfigurationError {
        ConfigurationError(source: source, line: nil, key: key, message: "missing required key: \(why)")
    }

    private static func endpoint(_ d: TOMLDocument, _ key: String) throws(ConfigurationError) -> Endpoint? {
        guard let text = try d.string(key) else { return nil }
        do {
            return try Endpoint(parsing: text)
        } catch {
            throw ConfigurationError(source: d.source, line: d.line(of: key), key: key, message: "\(error)")
        }
    }
}
