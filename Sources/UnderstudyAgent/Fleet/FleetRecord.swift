/// One node's entry for one VM in the fleet registry (`/understudy/fleet/vms/<vm>/<host>`): what
/// `understudy status` says there, cut down to what a fleet view needs. Both nodes of a pair
/// publish one; `FleetView` puts them together. JSON in etcd, times in seconds since 1970.
public struct FleetRecord: Sendable, Codable, Equatable {
    public var vm: String
    /// The publishing host's fleet name (`fleet.host`).
    public var host: String
    /// The publishing node's name (`node.name`, its certificate's name).
    public var node: String
    public var role: AgentStatus.Role
    /// The role's phase (`protecting`, `serving`, `fenced`, ...), as `understudy status` shows it.
    public var state: String
    public var detail: String?
    /// The peer node's name (`peer.name`); the peer's host is that of the VM's record published by it.
    public var peer: String
    /// The newest checkpoint the backup acknowledged (primary) or committed (backup).
    public var committedEpoch: UInt64?
    /// Asynchronous mode: the replica's lag now, and whether it is over the recovery point objective.
    public var lagMilliseconds: Double?
    public var recoveryPointExceeded: Bool?
    /// The primary's recent checkpoints' pause, 99th percentile.
    public var pauseMillisecondsP99: Double?
    /// synchronous | asynchronous (primary).
    public var protectionMode: String?
    /// The witness term this node claimed last.
    public var witnessTerm: UInt64?
    /// The backup's last scheduled drill: when it began, whether its probe passed, and how long
    /// the clone took to pass it (`BackupStatus.lastDrill`). Nil while no drill ran
    /// (`drill.every`).
    public var lastDrillAt: Double?
    public var lastDrillPassed: Bool?
    public var lastDrillRecoverySeconds: Double?
    /// When the node wrote this entry.
    public var publishedAt: Double

    public init(vm: String, host: String, node: String, role: AgentStatus.Role, state: String, peer: String, publishedAt: Double) {
        self.vm = vm
        self.host = host
        self.node = node
        self.role = role
        self.state = state
        self.peer = peer
        self.publishedAt = publishedAt
    }

    /// The entry for a node's status.
    public init(status: AgentStatus, host: String, node: String, peer: String, publishedAt: Double) {
        self.init(vm: status.vm, host: host, node: node, role: status.role, state: status.state, peer: peer, publishedAt: publishedAt)
        detail = status.detail
        switch status {
        case .primary(let primary):
            committedEpoch = primary.committedEpoch
            lagMilliseconds = primary.lagMilliseconds
            recoveryPointExceeded = primary.recoveryPointExceeded
            pauseMillisecondsP99 = primary.pauseMillisecondsP99
            protectionMode = primary.protectionMode
            witnessTerm = primary.witnessTerm
        case .backup(let backup):
            committedEpoch = backup.committedEpoch
            witnessTerm = backup.witnessTerm
            lastDrillAt = backup.lastDrill?.at
            lastDrillPassed = backup.lastDrill?.passed
            lastDrillRecoverySeconds = backup.lastDrill?.recoveryMs.map { $0 / 1000 }
        case .starting:
            break
        }
    }

    /// The same entry without the fields that change with every checkpoint (epoch, lag, pause):
    /// when it differs from the last one published, the entry is published at once.
    var significant: FleetRecord {
        var copy = self
        copy.committedEpoch = nil
        copy.lagMilliseconds = nil
        copy.pauseMillisecondsP99 = nil
        copy.publishedAt = 0
        copy.detail = nil
        return copy
    }
}
