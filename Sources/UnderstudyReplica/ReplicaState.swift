import UnderstudyProtocol

/// What the backup knows about its replica, published atomically after each change.
public struct ReplicaState: Sendable, Equatable {
    public enum Phase: UInt8, Sendable, CustomStringConvertible {
        /// Nothing received yet.
        case empty = 0
        /// Initial synchronisation in progress: memory is not a consistent image.
        case syncing = 1
        /// Initial synchronisation finished; still no checkpoint committed on top of it.
        case synced = 2
        /// Memory and device state are exactly checkpoint `committedEpoch`.
        case committed = 3

        public var description: String {
            switch self {
            case .empty: "empty"
            case .syncing: "syncing"
            case .synced: "synced"
            case .committed: "committed"
            }
        }
    }

    public var identity: VMIdentity
    /// Increases by one with every publish; the journal names the generation it applies on top of.
    public var generation: UInt64
    public var phase: Phase
    /// The last committed epoch (0 when none).
    public var committedEpoch: UInt64
    /// The device-state blob of `committedEpoch`.
    public var deviceState: [UInt8]
    /// Why the replica was emptied without a new synchronisation (a demoted node's replica belongs
    /// to a history that another copy of the VM has since left); nil once a sync begins.
    public var resetReason: String?

    public init(identity: VMIdentity, generation: UInt64 = 0, phase: Phase = .empty, committedEpoch: UInt64 = 0,
                deviceState: [UInt8] = [], resetReason: String? = nil) {
        self.identity = identity
        self.generation = generation
        self.phase = phase
        self.committedEpoch = committedEpoch
        self.deviceState = deviceState
        self.resetReason = resetReason
    }

    /// Why a VM cannot be activated from this replica (failover, switchover, `understudy
    /// activate`); nil when it can: only a committed checkpoint is a whole image of the VM.
    public var activationRefusal: String? {
        guard phase != .committed else { return nil }
        if let resetReason {
            return "the replica was reset (\(resetReason)): nothing to activate until a full sync from the current primary has committed"
        }
        return "the replica is \(phase), not committed: nothing to activate (a primary must finish its initial sync and one checkpoint first)"
    }
}
