import Foundation
import Logging
import UnderstudyNetwork
import UnderstudyProtocol
import UnderstudyQEMU
import UnderstudySystem
import UnderstudyTransport

/// One node's configuration file (TOML), validated at load with errors that name the key.
///
/// ```toml
/// [node]
/// name = "primary"                      # this node; its certificate carries this name
/// certificates = "/etc/understudy/certs" # ca.pem, NAME.pem, NAME.key
/// role = "primary"                      # understudy run: the role of a new pair's node (primary | backup)
/// state_dir = "/var/lib/understudy/web-1"  # understudy run: the role this node last had, across restarts
/// on_stop = "switchover"                # understudy run, SIGTERM on the node running the VM: switchover | stop
///
/// [log]
/// level = "notice"                      # trace | debug | info | notice | warning | error | critical (SIGHUP reloads it)
/// format = "auto"                       # auto (human on a terminal, JSON lines otherwise) | human | json
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
/// disk_image = "/var/lib/understudy/web-1/disk.raw"  # raw; the backup's copy has the same size
/// # disks = ["/var/lib/understudy/web-1/system.raw", "/var/lib/understudy/web-1/data.raw"]  # or up to 8, in order, instead
/// firmware = "bios"                     # bios | uefi (OVMF; then uefi_vars, and uefi_code if not Debian's)
/// # uefi_vars = "/var/lib/understudy/web-1/VARS.fd"  # this VM's copy of OVMF_VARS_4M.fd, replicated like a disk
/// rng = false                           # a virtio-rng device
/// mac = "52:54:00:12:34:56"             # the guest NIC's address (default: derived from the id)
/// # macs = ["52:54:00:12:34:56", "52:54:00:12:34:57"]  # or up to 4 NICs, in order (default: derived)
/// virtio = "legacy"                     # legacy | modern: legacy keeps each checkpoint's device state small
/// pause_priority = 10                   # SCHED_FIFO priority of the pause path (agent + QEMU main thread); 0: off
/// run_dir = "/run/understudy/web-1"     # QMP, serial log, control socket
///
/// [network]
/// tap = "tap-web-1"                     # this node's TAP for the guest NIC; bridge it to the LAN
/// # taps = ["tap-web-1", "tap-web-1-be"]  # or one per NIC, in order (each through its own output gate)
/// buffer_mib = 16                       # output held for unacknowledged checkpoints, at most
/// unsafe_no_output_buffering = false    # true releases output at once: no output commit (benchmarks only)
/// default_action = "allow"              # the gate policy (SIGHUP reloads it): see GatePolicy+Configuration
///
/// [[network.rules]]                     # ordered, first match wins; both directions, before output commit
/// action = "deny"
/// protocol = "tcp"
/// destination_ports = "22"
///
/// [replication]
/// interval_ms = 25
/// max_epochs_in_flight = 4
/// dirty_tracking = "auto"               # auto | pagemap | compare
/// mode = "synchronous"                  # or asynchronous: see ReplicationConfiguration for the WAN keys
///
/// [backup]
/// listen = "0.0.0.0:7400"
/// replica_dir = "/dev/shm/understudy/web-1"  # tmpfs: QEMU maps it as RAM on activation
///
/// [heartbeat]
/// interval_ms = 40                      # a heartbeat when nothing else was sent for this long
/// missed = 5                            # the peer is lost after this many silent intervals...
/// min_timeout_ms = 200                  # ...and at least this long
/// udp_listen = "192.0.2.1:7401"         # optional second path (another link): this node's end
/// udp_peer = "192.0.2.2:7401"           #   and the peer's
///
/// [failover]
/// automatic = true                      # the backup activates when the primary is lost
/// without_witness = false               # true: automatic failover with no witness (split-brain risk, see docs)
/// grace_ms = 1000                       # primary: hold output this long after losing the backup...
/// policy = "availability"               # ...then continue unprotected (availability) or keep holding (safety)
/// reconnect_ms = 1000                   # how often to try to (re)connect to the backup
/// ack_timeout_ms = 5000                 # primary: checkpoints in flight and no ACK (nor stream progress) this long: backup lost
///
/// [witness]
/// endpoints = ["192.0.2.3:2379"]        # etcd v3 (HTTP/JSON gateway over TLS); the active copy holds a lease
/// lease_ttl_s = 2
/// server_name = "witness"               # the name in etcd's certificate (from `understudy certs init`); this node's own certificate is its client certificate
///
/// [metrics]
/// listen = "127.0.0.1:9464"             # Prometheus text at http://ADDRESS/metrics; absent: no endpoint
///
/// [fleet]
/// endpoints = ["192.0.2.3:2379"]        # publish to the fleet registry (etcd): see FleetConfiguration for the keys
/// ```
public struct AgentConfiguration: Sendable {
    public var source: String
    public var nodeName: String
    /// `understudy run`: the role a node starts in when it has no role record yet.
    public var role: NodeRole?
    /// `understudy run`: where the node keeps its role across restarts.
    public var stateDirectory: String
    public var onStop: StopAction
    /// The log level and format from `[log]`; the command line's `--log-level` wins.
    public var logLevel: Logger.Level?
    public var logFormat: LogFormat
    public var certificates: String
    public var peerName: String
    public var peerAddress: Endpoint?
    public var vm: VMDescription
    public var interval: Duration
    public var maxEpochsInFlight: Int
    public var dirtyTracking: DirtyTrackingPreference
    /// `[replication]`'s keys for thin and long links (mode, objective, cap, adaptive interval, catch-up).
    public var replication: ReplicationConfiguration
    public var listen: Endpoint?
    public var replicaDirectory: String?
    /// The guest's NICs: this node's TAP for each, and its MAC address (the same on both nodes,
    /// so the network sees one machine). Empty: the VM has no network.
    public var nics: [GuestDevices.NIC]
    public var outputBufferBytes: Int
    /// Output commit off: guest frames leave at once (only to measure what buffering costs).
    public var unsafeNoOutputBuffering: Bool
    /// The gate's firewall (`[[network.rules]]`, `network.default_action`); also the drill sandbox's.
    public var policy: GatePolicy
    public var heartbeat: HeartbeatMonitor.Configuration
    /// The optional datagram heartbeat path: this node's end and the peer's.
    public var heartbeatDatagrams: (listen: Endpoint, peer: Endpoint)?
    public var failover: FailoverConfiguration
    /// etcd endpoints of the witness; empty: no witness.
    public var witnessEndpoints: [Endpoint]
    public var witnessLeaseTTL: Duration
    /// The name in the witness's (etcd's) certificate, issued by the pair's CA.
    public var witnessServerName: String
    /// The `[drill]` table (`understudy drill`).
    public var drill: DrillConfiguration
    /// The `[inspect]` table (scheduled inspections of the replica).
    public var inspection: InspectionConfiguration
    /// Where to serve Prometheus metrics (`GET /metrics`); nil: no endpoint.
    public var metricsListen: Endpoint?
    /// The `[fleet]` table: publish to the fleet registry; nil: this node does not.
    public var fleet: FleetConfiguration?

    static let knownKeys: Set<String> = [
        "node.name", "node.certificates", "node.role", "node.state_dir", "node.on_stop", "log.level", "log.format",
        "peer.name", "peer.address",
        "vm.id", "vm.memory_mib", "vm.vcpus", "vm.machine", "vm.accelerator", "vm.kernel", "vm.initrd", "vm.cmdline",
        "vm.disk_image", "vm.disks", "vm.firmware", "vm.uefi_vars", "vm.uefi_code", "vm.rng", "vm.mac", "vm.macs", "vm.virtio", "vm.pause_priority", "vm.run_dir", "vm.qemu",
        "network.tap", "network.taps", "network.buffer_mib", "network.unsafe_no_output_buffering",
        "replication.interval_ms", "replication.max_epochs_in_flight", "replication.dirty_tracking",
        "backup.listen", "backup.replica_dir",
        "heartbeat.interval_ms", "heartbeat.missed", "heartbeat.min_timeout_ms", "heartbeat.udp_listen", "heartbeat.udp_peer",
        "failover.automatic", "failover.without_witness", "failover.grace_ms", "failover.policy", "failover.reconnect_ms",
        "failover.ack_timeout_ms",
        "witness.endpoints", "witness.lease_ttl_s", "witness.server_name",
        "metrics.listen",
    ]

    public init(contentsOfFile path: String) throws(ConfigurationError) {
        try self.init(document: TOMLDocument(contentsOfFile: path))
    }

    public init(document d: TOMLDocument) throws(ConfigurationError) {
        try d.rejectUnknownKeys(Self.knownKeys.union(DrillConfiguration.knownKeys).union(ReplicationConfiguration.knownKeys)
                                    .union(GatePolicy.knownKeys).union(InspectionConfiguration.knownKeys)
                                    .union(FleetConfiguration.knownKeys))
        source = d.source
        drill = try DrillConfiguration(document: d)
        inspection = try InspectionConfiguration(document: d)
        nodeName = try d.requiredString("node.name")
        certificates = try d.requiredString("node.certificates")
        peerName = try d.requiredString("peer.name")
        peerAddress = try Self.endpoint(d, "peer.address")
        let id = try d.requiredString("vm.id")
        guard VMDescription.isValidID(id) else {
            throw ConfigurationError(source: d.source, line: d.line(of: "vm.id"), key: "vm.id",
                                     message: "\(id.debugDescription) is not a VM id: use \(VMDescription.idRule) (it names files and QEMU options)")
        }
        let runDirectory = try d.string("vm.run_dir") ?? "/run/understudy/\(id)"
        role = try d.oneOf("node.role", NodeRole.self)
        stateDirectory = try d.string("node.state_dir") ?? "/var/lib/understudy/\(id)"
        onStop = try d.oneOf("node.on_stop", StopAction.self) ?? .switchover
        logLevel = try d.oneOf("log.level", Logger.Level.self)
        logFormat = try d.oneOf("log.format", LogFormat.self) ?? .auto
        vm = VMDescription(
            id: id,
            memoryBytes: UInt64(try d.requiredInteger("vm.memory_mib", in: 16...1_048_576)) << 20,
            vcpus: Int(try d.integer("vm.vcpus", in: 1...64) ?? 1),
            machine: try d.string("vm.machine") ?? "pc",
            accelerator: try d.oneOf("vm.accelerator", VMDescription.Accelerator.self) ?? .auto,
            kernel: try d.string("vm.kernel"), initrd: try d.string("vm.initrd"),
            commandLine: try d.string("vm.cmdline") ?? "console=ttyS0",
            diskImages: try Self.diskImages(d), runDirectory: runDirectory,
            qemuBinary: try d.string("vm.qemu") ?? "qemu-system-x86_64")
        guard vm.kernel != nil || !vm.diskImages.isEmpty else {
            throw ConfigurationError(source: d.source, line: nil, key: "vm.kernel", message: "set vm.kernel (with vm.initrd) or vm.disk_image")
        }
        vm.firmware = try Self.firmware(d)
        guard vm.replicatedImages.count <= VMIdentity.maxDiskCount else {
            throw ConfigurationError(source: d.source, line: d.line(of: "vm.disks"), key: "vm.disks", message:
                "\(vm.diskImages.count) disks and the UEFI variable store make \(vm.replicatedImages.count) replicated images; "
                + "at most \(VMIdentity.maxDiskCount) (so \(VMIdentity.maxDiskCount - 1) disks with UEFI)")
        }
        vm.randomNumberGenerator = try d.bool("vm.rng") ?? false
        for disk in vm.diskImages { vm.diskSizes.append(try Self.diskSize(d, disk)) }
        if case .uefi(let code, let variables) = vm.firmware {
            let size = try Self.diskSize(d, variables, key: "vm.uefi_vars")
            // OVMF's code and variable store come in pairs of flash sizes; a store of the other
            // build (a 2 MiB firmware's 128 KiB one) does not boot with this code.
            let codeSize = (try? FileManager.default.attributesOfItem(atPath: code)[.size] as? UInt64) ?? nil
            if let expected = codeSize.flatMap({ VMDescription.uefiVariablesSize(forCodeOfSize: $0) }), size != expected {
                throw ConfigurationError(source: d.source, line: d.line(of: "vm.uefi_vars"), key: "vm.uefi_vars", message:
                    "\(variables) has \(size) bytes, but the firmware \(code) needs a \(expected)-byte variable store "
                    + "(start from \(VMDescription.uefiVariablesTemplate) for the 4 MiB build)")
            }
            vm.diskSizes.append(size)
        }
        guard VMDescription.isSupportedMachine(vm.machine) else {
            throw ConfigurationError(source: d.source, line: d.line(of: "vm.machine"), key: "vm.machine",
                                     message: "\(vm.machine.debugDescription) is not supported: use \"pc\" or \"q35\" (or a versioned pc-i440fx-X.Y / pc-q35-X.Y)")
        }
        vm.virtio = try d.oneOf("vm.virtio", VMDescription.VirtioTransport.self) ?? .legacy
        vm.pausePriority = Int32(try d.integer("vm.pause_priority", in: 0...99) ?? 10)
        nics = try Self.nics(d, id: id)
        outputBufferBytes = Int(try d.integer("network.buffer_mib", in: 1...4096) ?? 16) << 20
        unsafeNoOutputBuffering = try d.bool("network.unsafe_no_output_buffering") ?? false
        policy = try GatePolicy(document: d)
        interval = .milliseconds(try d.integer("replication.interval_ms", in: 1...60_000) ?? 25)
        maxEpochsInFlight = Int(try d.integer("replication.max_epochs_in_flight", in: 1...Int64(PrimaryConfiguration.maximumEpochsInFlight)) ?? 4)
        dirtyTracking = try d.oneOf("replication.dirty_tracking", DirtyTrackingPreference.self) ?? .auto
        replication = try ReplicationConfiguration(document: d, interval: interval, stateDirectory: stateDirectory)
        if replication.mode == .asynchronous, unsafeNoOutputBuffering {
            throw ConfigurationError(source: d.source, line: d.line(of: "network.unsafe_no_output_buffering"), key: "network.unsafe_no_output_buffering",
                                     message: "asynchronous mode already lets output pass: remove this key")
        }
        listen = try Self.endpoint(d, "backup.listen")
        replicaDirectory = try d.string("backup.replica_dir")
        heartbeat = HeartbeatMonitor.Configuration(
            interval: .milliseconds(try d.integer("heartbeat.interval_ms", in: 1...60_000) ?? 40),
            missedLimit: Int(try d.integer("heartbeat.missed", in: 1...1000) ?? 5),
            minimumTimeout: .milliseconds(try d.integer("heartbeat.min_timeout_ms", in: 0...600_000) ?? 200))
        switch (try Self.endpoint(d, "heartbeat.udp_listen"), try Self.endpoint(d, "heartbeat.udp_peer")) {
        case (let listen?, let peer?): heartbeatDatagrams = (listen, peer)
        case (nil, nil): heartbeatDatagrams = nil
        case (nil, _): throw ConfigurationError(source: d.source, line: nil, key: "heartbeat.udp_listen",
                                                message: "missing: the datagram path needs both heartbeat.udp_listen and heartbeat.udp_peer")
        case (_, nil): throw ConfigurationError(source: d.source, line: nil, key: "heartbeat.udp_peer",
                                                message: "missing: the datagram path needs both heartbeat.udp_listen and heartbeat.udp_peer")
        }
        witnessEndpoints = []
        for text in try d.strings("witness.endpoints") ?? [] {
            if text.hasPrefix("http://") {
                throw ConfigurationError(source: d.source, line: d.line(of: "witness.endpoints"), key: "witness.endpoints",
                                         message: "\"\(text)\": the witness is reached over TLS with client certificates; write HOST:PORT "
                                             + "(or https://HOST:PORT) and run etcd with TLS (docs/OPERATIONS.md, One active copy)")
            }
            do {
                witnessEndpoints.append(try Endpoint(parsing: text.replacingOccurrences(of: "https://", with: "")))
            } catch {
                throw ConfigurationError(source: d.source, line: d.line(of: "witness.endpoints"), key: "witness.endpoints", message: "\(error)")
            }
        }
        witnessLeaseTTL = .seconds(try d.integer("witness.lease_ttl_s", in: 1...600) ?? 2)
        witnessServerName = try d.string("witness.server_name") ?? "witness"
        metricsListen = try Self.endpoint(d, "metrics.listen")
        fleet = try FleetConfiguration(document: d, certificates: certificates, node: nodeName, witnessServerName: witnessServerName,
                                       vmMemoryBytes: vm.memoryBytes, replicaDirectory: replicaDirectory)
        if let metricsListen, let listen, metricsListen.port != 0, metricsListen == listen {
            throw ConfigurationError(source: d.source, line: d.line(of: "metrics.listen"), key: "metrics.listen",
                                     message: "\"\(metricsListen)\" is also backup.listen: the metrics endpoint needs a port of its own")
        }
        failover = FailoverConfiguration(
            automatic: try d.bool("failover.automatic") ?? true,
            withoutWitness: try d.bool("failover.without_witness") ?? false,
            grace: .milliseconds(try d.integer("failover.grace_ms", in: 0...3_600_000) ?? 1000),
            policy: try d.oneOf("failover.policy", FailoverConfiguration.Policy.self) ?? .availability,
            reconnect: .milliseconds(try d.integer("failover.reconnect_ms", in: 10...600_000) ?? 1000),
            acknowledgementTimeout: .milliseconds(try d.integer("failover.ack_timeout_ms", in: 100...3_600_000) ?? 5000))
        if failover.withoutWitness, !witnessEndpoints.isEmpty {
            throw ConfigurationError(source: d.source, line: d.line(of: "failover.without_witness"), key: "failover.without_witness",
                                     message: "a witness is configured (witness.endpoints): remove without_witness, the witness is what makes failover safe")
        }
    }

    /// True when this node may activate the VM on its own when the primary is lost: a witness
    /// decides who is active, or the operator accepted the two-node risk.
    public var automaticFailover: Bool { failover.automatic && (!witnessEndpoints.isEmpty || failover.withoutWitness) }

    /// The control socket of the agent for this VM (owner-only).
    public var controlSocket: String { "\(vm.runDirectory)/control.sock" }

    public var tls: TLSConfiguration { TLSConfiguration(directory: certificates, node: nodeName, peer: peerName) }

    public var identity: VMIdentity { vm.identity }

    /// Checks the keys the primary role needs.
    public func primary() throws(ConfigurationError) -> PrimaryConfiguration {
        guard let peerAddress else { throw missing("peer.address", "the primary needs the backup's address") }
        var primary = PrimaryConfiguration(nodeName: nodeName, backup: peerAddress, tls: tls, interval: interval,
                                           maxEpochsInFlight: maxEpochsInFlight,
                                           requiredCapabilities: vm.replicatedImages.isEmpty ? [.deviceState] : [.deviceState, .diskWrites])
        primary.acknowledgementTimeout = failover.acknowledgementTimeout
        primary.maximumInterval = replication.maximumInterval
        primary.bandwidthLimit = replication.bandwidthLimit
        primary.compression = replication.compression
        primary.schedule = replication.schedule
        if replication.mode == .asynchronous {
            primary.recoveryPoint = RecoveryPointObjective(objective: replication.recoveryPointObjective, throttleGuest: replication.throttleGuest)
        }
        return primary
    }

    /// Checks the keys the backup role needs.
    public func backup() throws(ConfigurationError) -> BackupConfiguration {
        guard let listen else { throw missing("backup.listen", "the backup needs an address to listen on") }
        guard let replicaDirectory else { throw missing("backup.replica_dir", "the backup needs a directory for the replica") }
        return BackupConfiguration(nodeName: nodeName, listen: listen, tls: tls, identity: identity, replicaDirectory: replicaDirectory,
                                   replicaDisks: vm.replicatedImages)
    }

    private func missing(_ key: String, _ why: String) -> ConfigurationError {
        ConfigurationError(source: source, line: nil, key: key, message: "missing required key: \(why)")
    }

    /// `network.tap` and `vm.mac` (one NIC) or `network.taps` and `vm.macs` (several, in order);
    /// MACs default to ones derived from the VM id.
    private static func nics(_ d: TOMLDocument, id: String) throws(ConfigurationError) -> [GuestDevices.NIC] {
        func oneOrList(_ single: String, _ list: String) throws(ConfigurationError) -> (values: [String], key: String)? {
            let one = try d.string(single)
            guard let many = try d.strings(list) else { return one.map { ([$0], single) } }
            guard one == nil else {
                throw ConfigurationError(source: d.source, line: d.line(of: list), key: list, message: "set \(single) (one NIC) or \(list) (several), not both")
            }
            guard (1...GuestDevices.maximumNICs).contains(many.count) else {
                throw ConfigurationError(source: d.source, line: d.line(of: list), key: list,
                                         message: "\(many.count) NICs; list 1 to \(GuestDevices.maximumNICs)")
            }
            guard Set(many).count == many.count else {
                throw ConfigurationError(source: d.source, line: d.line(of: list), key: list, message: "\(list) lists one value twice")
            }
            return (many, list)
        }
        let taps = try oneOrList("network.tap", "network.taps")
        let macs = try oneOrList("vm.mac", "vm.macs")
        for tap in taps?.values ?? [] where tap.isEmpty || tap.utf8.count > 15 || tap.contains("/") || tap.contains(" ") {
            throw ConfigurationError(source: d.source, line: d.line(of: taps!.key), key: taps!.key,
                                     message: "\"\(tap)\" is not an interface name (1 to 15 characters, no '/' or spaces)")
        }
        for mac in macs?.values ?? [] where !isUnicastMAC(mac) {
            throw ConfigurationError(source: d.source, line: d.line(of: macs!.key), key: macs!.key,
                                     message: "\"\(mac)\" is not a unicast MAC address like \"52:54:00:12:34:56\"")
        }
        guard let taps else { return [] }
        if let macs, macs.values.count != taps.values.count {
            throw ConfigurationError(source: d.source, line: d.line(of: macs.key), key: macs.key,
                                     message: "\(macs.values.count) MAC addresses for \(taps.values.count) TAPs (\(taps.key)): one per NIC")
        }
        return taps.values.enumerated().map { index, tap in
            GuestDevices.NIC(tap: tap, mac: macs?.values[index] ?? defaultMAC(for: id, nic: index))
        }
    }

    /// `vm.firmware`: "bios" (default) or "uefi" with `vm.uefi_vars` (and `vm.uefi_code`).
    private static func firmware(_ d: TOMLDocument) throws(ConfigurationError) -> VMDescription.Firmware {
        let variables = try d.string("vm.uefi_vars")
        let code = try d.string("vm.uefi_code")
        switch try d.string("vm.firmware") ?? "bios" {
        case "bios":
            if let key = variables != nil ? "vm.uefi_vars" : code != nil ? "vm.uefi_code" : nil {
                throw ConfigurationError(source: d.source, line: d.line(of: key), key: key, message: "only for vm.firmware = \"uefi\"")
            }
            return .bios
        case "uefi":
            guard let variables else {
                throw ConfigurationError(source: d.source, line: d.line(of: "vm.firmware"), key: "vm.uefi_vars", message:
                    "UEFI needs this VM's own variable store, replicated with its disks: copy \(VMDescription.uefiVariablesTemplate) "
                    + "for it (on the backup, an empty file of the same size) and name it here")
            }
            return .uefi(code: code ?? VMDescription.defaultUEFICode, variables: variables)
        case let other:
            throw ConfigurationError(source: d.source, line: d.line(of: "vm.firmware"), key: "vm.firmware",
                                     message: "\(other.debugDescription) is neither \"bios\" nor \"uefi\"")
        }
    }

    /// `vm.disk_image` (one disk) or `vm.disks` (a list, in the guest's order).
    private static func diskImages(_ d: TOMLDocument) throws(ConfigurationError) -> [String] {
        let single = try d.string("vm.disk_image")
        guard let list = try d.strings("vm.disks") else { return single.map { [$0] } ?? [] }
        guard single == nil else {
            throw ConfigurationError(source: d.source, line: d.line(of: "vm.disks"), key: "vm.disks",
                                     message: "set vm.disk_image (one disk) or vm.disks (several), not both")
        }
        guard (1...VMIdentity.maxDiskCount).contains(list.count) else {
            throw ConfigurationError(source: d.source, line: d.line(of: "vm.disks"), key: "vm.disks",
                                     message: "\(list.count) disks; list 1 to \(VMIdentity.maxDiskCount)")
        }
        guard Set(list).count == list.count else {
            throw ConfigurationError(source: d.source, line: d.line(of: "vm.disks"), key: "vm.disks", message: "a disk image is listed twice")
        }
        return list
    }

    /// A disk's size, which both nodes must agree on: the image must exist on each node (the
    /// backup's is the replica; create it with `truncate -s` to the primary's size).
    private static func diskSize(_ d: TOMLDocument, _ path: String, key: String? = nil) throws(ConfigurationError) -> UInt64 {
        let key = key ?? (d.line(of: "vm.disks") == nil ? "vm.disk_image" : "vm.disks")
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
              attributes[.type] as? FileAttributeType == .typeRegular, let size = attributes[.size] as? UInt64 else {
            throw ConfigurationError(source: d.source, line: d.line(of: key), key: key, message:
                "\(path) is not a readable regular file (on the backup, create the replica disk with the primary's size: "
                + "truncate -s SIZE \(path))")
        }
        guard size > 0, size % VMIdentity.diskSectorSize == 0 else {
            throw ConfigurationError(source: d.source, line: d.line(of: key), key: key,
                                     message: "\(path) has \(size) bytes; a disk must be a positive multiple of 512 bytes")
        }
        return size
    }

    /// An address in QEMU's range derived from the VM id and the NIC's place, the same on every
    /// node (and in what `understudy import` writes).
    public static func defaultMAC(for id: String, nic index: Int = 0) -> String {
        let hash = (index == 0 ? id : "\(id)#\(index)").utf8.reduce(UInt32(2_166_136_261)) { ($0 ^ UInt32($1)) &* 16_777_619 }
        return String(format: "52:54:00:%02x:%02x:%02x", (hash >> 16) & 0xff, (hash >> 8) & 0xff, hash & 0xff)
    }

    /// Six hex bytes with colons, not multicast, not all zero.
    public static func isUnicastMAC(_ text: String) -> Bool {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6, let bytes = Optional(parts.compactMap { $0.count == 2 ? UInt8($0, radix: 16) : nil }),
              bytes.count == 6 else { return false }
        return bytes[0] & 1 == 0 && bytes != [0, 0, 0, 0, 0, 0]
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
