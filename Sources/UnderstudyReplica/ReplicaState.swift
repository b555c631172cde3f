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

    public init(identity: VMIdentity, generation: UInt64 = 0, phase: Phase = .empty, committedEpoch: UInt64 = 0,
                deviceState: [UInt8] = []) {
        self.identity = identity
        self.generation = generation
        self.phase = phase
        self.committedEpoch = committedEpoch
        self.deviceState = deviceState
    }
}
