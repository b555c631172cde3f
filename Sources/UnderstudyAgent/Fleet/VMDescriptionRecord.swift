import Foundation
import UnderstudyQEMU
import UnderstudySystem

/// What a spare host needs to protect a VM and does not have (`/understudy/fleet/descriptions/<vm>`):
/// the VM model a replica must match (its `VMIdentity`: memory and disk sizes, in order), what
/// the standby QEMU must look like on activation (vCPUs, machine, firmware, NICs' MACs, rng,
/// virtio), the replication and failover settings both ends must agree on, and who the
/// primary is. A primary with `[fleet]` publishes it on its registry lease.
///
/// No secrets (trust comes from the fleet's CA, not from the registry) and no host paths: the
/// kernel and initrd are named by file name only, and a spare finds them in its `spare.boot_dir`.
public struct VMDescriptionRecord: Sendable, Codable, Equatable {
    public var vm: String
    /// The primary's node name (its certificate's name), host, and where it listens as a backup
    /// (`backup.listen`: where an activated spare protects the VM back to); nil when it listens
    /// on every address (no address to reach it by) or not at all.
    public var primaryNode: String
    public var primaryHost: String
    public var primaryAddress: String?
    /// Where the primary sends and receives its heartbeat datagrams (`heartbeat.udp_listen`): a
    /// spare's backup node makes it its `udp_peer`. Nil when the primary has no second heartbeat
    /// path, or listens for it on every address (no source address a backup could check); older
    /// primaries publish none.
    public var primaryUDP: String?
    public var memoryBytes: UInt64
    public var vcpus: Int
    public var machine: String
    /// "bios" or "uefi"; with UEFI, the last disk size is the variable store's.
    public var firmware: String
    public var kernelName: String?
    public var initrdName: String?
    public var commandLine: String
    /// The replicated images' sizes, in the guest's order.
    public var diskSizes: [UInt64]
    public var macs: [String]
    public var randomNumberGenerator: Bool
    public var virtio: String
    /// `replication.mode`, `interval_ms`, `max_epochs_in_flight`.
    public var replicationMode: String
    public var intervalMilliseconds: Int
    public var maxEpochsInFlight: Int
    /// `[heartbeat]`: both ends must lose each other by the same rule.
    public var heartbeatIntervalMilliseconds: Int
    public var heartbeatMissed: Int
    public var heartbeatMinimumTimeoutMilliseconds: Int
    /// `[failover]` and `[witness]`: whether and how a backup may activate.
    public var failoverAutomatic: Bool
    public var failoverWithoutWitness: Bool
    public var witnessEndpoints: [String]
    public var witnessServerName: String
    public var witnessLeaseTTLSeconds: Int
    /// When the primary wrote it (seconds since 1970).
    public var publishedAt: Double

    /// The description of the VM a primary runs with `configuration`, on fleet host `host`.
    public init(configuration c: AgentConfiguration, host: String, publishedAt: Double) {
        vm = c.vm.id
        primaryNode = c.nodeName
        primaryHost = host
        primaryAddress = c.listen.flatMap { $0.isWildcard ? nil : $0.description }
        primaryUDP = c.heartbeatDatagrams.flatMap { $0.listen.isWildcard ? nil : $0.listen.description }
        memoryBytes = c.vm.memoryBytes
        vcpus = c.vm.vcpus
        machine = c.vm.machine
        switch c.vm.firmware {
        case .bios: firmware = "bios"
        case .uefi: firmware = "uefi"
        }
        kernelName = c.vm.kernel.map { URL(fileURLWithPath: $0).lastPathComponent }
        initrdName = c.vm.initrd.map { URL(fileURLWithPath: $0).lastPathComponent }
        commandLine = c.vm.commandLine
        diskSizes = c.vm.diskSizes
        macs = c.nics.map(\.mac)
        randomNumberGenerator = c.vm.randomNumberGenerator
        virtio = c.vm.virtio.rawValue
        replicationMode = c.replication.mode.rawValue
        intervalMilliseconds = Int(c.interval.wholeMilliseconds)
        maxEpochsInFlight = c.maxEpochsInFlight
        heartbeatIntervalMilliseconds = Int(c.heartbeat.interval.wholeMilliseconds)
        heartbeatMissed = c.heartbeat.missedLimit
        heartbeatMinimumTimeoutMilliseconds = Int(c.heartbeat.minimumTimeout.wholeMilliseconds)
        failoverAutomatic = c.failover.automatic
        failoverWithoutWitness = c.failover.withoutWitness
        witnessEndpoints = c.witnessEndpoints.map(\.description)
        witnessServerName = c.witnessServerName
        witnessLeaseTTLSeconds = Int(c.witnessLeaseTTL.seconds)
        self.publishedAt = publishedAt
    }
}
