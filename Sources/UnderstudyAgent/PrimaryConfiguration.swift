import UnderstudyProtocol
import UnderstudySystem
import UnderstudyTransport

/// How the primary replicates.
public struct PrimaryConfiguration: Sendable {
    /// The largest `maxEpochsInFlight` a primary may be configured with; the backup makes room for
    /// that many checkpoints waiting to be applied.
    public static let maximumEpochsInFlight = 64

    public var nodeName: String
    public var backup: Endpoint
    public var tls: TLSConfiguration
    /// Time from the start of one checkpoint to the start of the next (zero: back to back).
    public var interval: Duration
    /// Checkpoints captured but not yet acknowledged, at most; the loop waits when it is reached.
    public var maxEpochsInFlight: Int
    /// Frames queued for the sender thread, at most (each up to about 1 MiB).
    public var sendQueueFrames: Int
    /// Pre-copy rounds of the initial sync before the first checkpoint pauses the guest.
    public var preCopyRounds: Int
    /// Pre-copy stops early once a round has at most this many dirty pages.
    public var preCopyStopPages: Int
    public var connectTimeout: Duration
    /// Capabilities the backup must offer, or the session is refused (disk writes need a replica disk).
    public var requiredCapabilities: Capabilities
    /// Heartbeats on the connection, and when the backup counts as lost; nil: none (tests).
    public var heartbeat: HeartbeatMonitor.Configuration?
    /// Checkpoints in flight and no acknowledgement (nor stream progress) for this long: the
    /// backup counts as lost, like heartbeat silence. Checked by the heartbeat thread, so only
    /// with `heartbeat`; nil: never.
    public var acknowledgementTimeout: Duration?
    /// The number of this session's first checkpoint: a new session of the same running VM
    /// continues the numbering, because the output gate's epochs must keep increasing.
    public var firstEpoch: UInt64 = 1
    /// Where checkpoints, acknowledgements and heartbeat round trips are recorded; nil: nowhere.
    public var metrics: AgentMetrics?
    /// The longest interval the adaptive interval may stretch to, so that checkpoints fit the
    /// link (`interval` is the shortest); nil: the interval is fixed.
    public var maximumInterval: Duration?
    /// The cap on the replication stream, in bytes per second; nil: none.
    public var bandwidthLimit: Int?
    /// Asynchronous protection: output is not held, and the replica may lag by this objective;
    /// nil: synchronous (output commit).
    public var recoveryPoint: RecoveryPointObjective?
    /// Remembers unacknowledged checkpoints across sessions, so that a new session can catch
    /// the backup up instead of resynchronising; nil: every session synchronises in full.
    public var backlog: ReplicationBacklog?
    /// LZ4, or LZ4 high compression for thin links (fewer bytes, more CPU).
    public var compression: CompressionMode = .fast
    /// Whether (and how often) output waiting in the gate ends the open epoch before the interval.
    public var schedule: CheckpointSchedule.Policy = .default
    /// Set while the output gate holds frames of the open epoch (`GuestDevices.outputWaiting`);
    /// nil: no gate, checkpoints follow the interval only.
    public var outputWaiting: WaitableFlag?

    public init(nodeName: String, backup: Endpoint, tls: TLSConfiguration, interval: Duration = .milliseconds(25),
                maxEpochsInFlight: Int = 4, sendQueueFrames: Int = 16, preCopyRounds: Int = 5, preCopyStopPages: Int = 256,
                connectTimeout: Duration = .seconds(5), requiredCapabilities: Capabilities = [.deviceState],
                heartbeat: HeartbeatMonitor.Configuration? = nil) {
        self.heartbeat = heartbeat
        self.nodeName = nodeName
        self.backup = backup
        self.tls = tls
        self.interval = interval
        self.maxEpochsInFlight = maxEpochsInFlight
        self.sendQueueFrames = sendQueueFrames
        self.preCopyRounds = preCopyRounds
        self.preCopyStopPages = preCopyStopPages
        self.connectTimeout = connectTimeout
        self.requiredCapabilities = requiredCapabilities
    }
}
