import UnderstudyNetwork

/// The status of a node running the VM: its protection's phase, the current session's
/// checkpoints, the output gate and the guest's disk.
public struct PrimaryStatus: Sendable, Codable, Equatable {
    public typealias Phase = ProtectionStateMachine.Phase

    public var vm: String
    public var state: Phase
    public var detail: String?
    /// The newest checkpoint the session sent, and the newest the backup acknowledged.
    public var currentEpoch: UInt64?
    public var committedEpoch: UInt64?
    public var checkpointsPerSecond: Double?
    /// Checkpoints this session took because output waited in the gate, because the interval
    /// passed, and to catch the backup up.
    public var checkpointsForOutput: Int?
    public var checkpointsForInterval: Int?
    public var checkpointsForCatchUp: Int?
    public var pauseMillisecondsP50: Double?
    public var pauseMillisecondsP99: Double?
    public var pauseMillisecondsMax: Double?
    /// The session's longest pause phase by phase (`PauseBreakdown.summary`), its `epoch`, and
    /// `skippedLook` (1 when it stopped without a look before it, 0 otherwise).
    public var longestPause: [String: Double]?
    /// The mean pause, phase by phase (same keys as `longestPause`, without `epoch` and `skippedLook`).
    public var meanPause: [String: Double]?
    /// Holds of the guest before pauses (pre-copy slices of a guest writing too fast for rounds
    /// while it runs) and the longest: the guest stalls for them too.
    public var holds: Int?
    public var holdMillisecondsMax: Double?
    /// Checkpoints that stopped the guest without first looking at what it wrote (a walk of all
    /// its page tables): soon after the last collection of a guest writing slowly (`PreStopLook`).
    public var skippedLooks: Int?
    public var dirtyPagesPerCheckpoint: Double?
    public var rawBytes: Int?
    public var wireBytes: Int?
    /// Per checkpoint sent, on average: device-state bytes, what the wire carried for them
    /// (device-state-delta makes that a few hundred bytes), and the framing around the content.
    public var deviceStateRawBytesPerCheckpoint: Double?
    public var deviceStateWireBytesPerCheckpoint: Double?
    public var framingBytesPerCheckpoint: Double?
    public var ackLatencyMillisecondsP50: Double?
    public var ackLatencyMillisecondsP99: Double?
    public var dirtyTracking: String?
    /// Memory the agent keeps to copy checkpoints out of the guest (`QEMUCheckpointSource.stagingBytes`).
    public var stagingBytes: Int?
    /// The last full synchronisation: pages sent (those the guest ever wrote, some twice), wire
    /// bytes, and how long it took to hand them to the sender (which holds only a few frames).
    public var syncPages: Int?
    public var syncWireBytes: Int?
    public var syncSeconds: Double?
    public var sessions: Int?
    /// Output gate: guest frames held for unacknowledged checkpoints, and those dropped because
    /// the buffer was full; when frames may leave (output commit, unprotected, or unsafe).
    public var outputHeldFrames: Int?
    public var outputHeldBytes: Int?
    public var outputDroppedFrames: Int?
    public var outputReleasedFrames: Int?
    /// Frames dropped because this node could not prove it is the active copy (lease not valid).
    public var outputFencedFrames: Int?
    public var outputMode: String?
    /// The gate policy's counters, rule by rule; nil when the policy lets everything pass (no rules).
    public var gatePolicy: GatePolicyStatistics?
    /// Initial synchronisation, while it runs: bytes copied and to copy, rate, estimated time left.
    public var syncBytesDone: Int?
    public var syncBytesTotal: Int?
    public var syncBytesPerSecond: Double?
    public var syncSecondsLeft: Double?
    /// Bytes of guest disk writes recorded for the open epoch, not yet captured.
    public var diskPendingBytes: Int?
    /// Guest disk writes and flushes served (NBD).
    public var diskWrites: Int?
    public var diskFlushes: Int?
    /// The checkpoint an activated VM started from.
    public var activatedFromEpoch: UInt64?
    /// Who may be the active copy: the witness and whether this node holds its lease.
    public var fence: String?
    /// The witness term this node claimed last (held while `fence` says so); nil: none, or no witness.
    public var witnessTerm: UInt64?
    /// synchronous | asynchronous (primary).
    public var protectionMode: String?
    /// The checkpoint interval now and why; the wire bytes per second checkpoints need and the link's budget.
    public var intervalMilliseconds: Double?
    public var intervalReason: String?
    public var checkpointDemandBytesPerSecond: Double?
    public var linkBudgetBytesPerSecond: Double?
    /// Asynchronous mode: the replica's lag now and its peaks' percentiles, the objective,
    /// whether the lag is over it, and the share of each interval the guest is held paused.
    public var lagMilliseconds: Double?
    public var lagMillisecondsP50: Double?
    public var lagMillisecondsP99: Double?
    public var recoveryPointObjectiveMilliseconds: Double?
    public var recoveryPointExceeded: Bool?
    public var guestThrottle: Double?
    /// How the current session brought the backup up to date ("catch-up from checkpoint N" or "full sync: why").
    public var sessionStart: String?
    /// The catch-up checkpoint: pages and disk writes it carried, wire bytes, seconds from capture to acknowledgement.
    public var catchUpPages: Int?
    public var catchUpDiskWrites: Int?
    public var catchUpWireBytes: Int?
    public var catchUpSeconds: Double?
    /// The catch-up, until it is acknowledged: bytes sent and to send (estimated before
    /// compression until it is queued whole), rate, estimated time left.
    public var catchUpBytesSent: Int?
    public var catchUpBytesTotal: Int?
    public var catchUpBytesPerSecond: Double?
    public var catchUpSecondsLeft: Double?
    /// Disk writes kept in the catch-up journal while the backup cannot be reached.
    public var catchUpJournalBytes: Int?
    /// The second heartbeat path with the current peer ("to ADDRESS (NAME)"), or "none: why" when
    /// only one end has one (a spare without `spare.udp_host`); nil: none configured.
    public var heartbeatDatagrams: String?

    public init(vm: String, state: Phase, detail: String? = nil) {
        self.vm = vm
        self.state = state
        self.detail = detail
    }
}
