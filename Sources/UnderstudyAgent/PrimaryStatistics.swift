import UnderstudyProtocol
import UnderstudyQEMU

/// Counters of a primary's session, read with `PrimaryReplicator.statistics`.
public struct PrimaryStatistics: Sendable {
    public var syncPages = 0
    public var syncWireBytes = 0
    public var syncDuration: Duration = .zero
    /// Initial sync progress: guest memory and disk bytes copied, and the bytes known to be
    /// copied in all (it grows when a pre-copy round finds pages written meanwhile).
    public var syncBytesDone = 0
    public var syncBytesTotal = 0
    public var syncStarted: ContinuousClock.Instant?
    public var checkpointsSent = 0
    /// The newest epoch this session sent (0 before its first checkpoint).
    public var currentEpoch: UInt64 = 0
    public var checkpointsAcknowledged = 0
    public var lastAcknowledgedEpoch: UInt64 = 0
    public var dirtyPages = 0
    public var rawBytes = 0
    public var wireBytes = 0
    /// Of the checkpoints sent: device-state bytes, what DEVICE_STATE carried for them, and the
    /// framing around the content (`CheckpointEncoder.Output.framingBytes`).
    public var deviceStateRawBytes = 0
    public var deviceStateWireBytes = 0
    public var framingBytes = 0
    /// The most recent pauses and ack latencies (at most `PrimaryStatistics.window` of each),
    /// so that a long-running agent keeps a bounded history.
    public var pauses: [Duration] = []
    /// The session's longest pause, phase by phase, and its checkpoint.
    public var longestPause: (epoch: UInt64, breakdown: PauseBreakdown)?
    /// Every pause of the session summed phase by phase, and how many: their mean says where a
    /// typical pause goes (QEMU's share: stop, device save, resume; the agent's: collect, copy, boundary).
    public var pauseSum = PauseBreakdown()
    public var pausesBrokenDown = 0
    /// The longest hold of the guest before a pause (a pre-copy round of a guest writing too fast
    /// for rounds while it runs stops it in slices); `pauseSum.holds` counts them.
    public var longestHold: Duration = .zero
    public var ackLatencies: [Duration] = []
    /// When the most recent checkpoints were captured and how many pages each had.
    public var recent: [(at: ContinuousClock.Instant, dirtyPages: Int)] = []
    public var encodings: [PageEncoding: Int] = [:]
    /// Checkpoints sent, by why each was taken.
    public var checkpointReasons: [CheckpointReason: Int] = [:]
    /// How the session started; nil until the backup's WELCOME.
    public var start: SessionStart?
    /// The catch-up checkpoint: its pages and disk writes, wire bytes, and how long from its
    /// capture until the backup acknowledged it (nil until acknowledged).
    public var catchUpPages = 0
    public var catchUpDiskWrites = 0
    public var catchUpWireBytes = 0
    public var catchUpDuration: Duration?
    /// The catch-up's progress: bytes sent since it started, of the bytes it carries (estimated
    /// before compression until it is queued whole, then its wire bytes), and when it started.
    public var catchUpBytesSent = 0
    public var catchUpBytesTotal = 0
    public var catchUpStarted: ContinuousClock.Instant?
    /// The adaptive interval's current choice (the fixed interval's, when it does not adapt).
    public var interval: CheckpointIntervalController.Decision?
    /// Asynchronous mode: the replica's lag now, its peaks (just before each acknowledgement),
    /// whether it is over the objective, and how hard the guest is throttled (share of each interval paused).
    public var lag: Duration?
    public var lagPeaks: [Duration] = []
    public var recoveryPointExceeded = false
    public var throttle = 0.0
    public var throttledFor: Duration = .zero

    public static let window = 10_000

    public init() {}

    mutating func note(pause: Duration, dirtyPages: Int, at time: ContinuousClock.Instant) {
        Self.append(pause, to: &pauses)
        Self.append((time, dirtyPages), to: &recent)
    }

    mutating func note(_ breakdown: PauseBreakdown, epoch: UInt64) {
        if breakdown.total > longestPause?.breakdown.total ?? .zero { longestPause = (epoch, breakdown) }
        pauseSum = pauseSum + breakdown
        pausesBrokenDown += 1
        longestHold = max(longestHold, breakdown.longestHold)
    }

    mutating func note(ackLatency: Duration) { Self.append(ackLatency, to: &ackLatencies) }

    mutating func note(lagPeak: Duration) { Self.append(lagPeak, to: &lagPeaks) }

    private static func append<T>(_ value: T, to samples: inout [T]) {
        samples.append(value)
        if samples.count >= 2 * window { samples.removeFirst(samples.count - window) }
    }

    /// The mean pause phase by phase; nil before the first.
    public var meanPause: PauseBreakdown? { pausesBrokenDown > 0 ? pauseSum.mean(of: pausesBrokenDown) : nil }

    /// Checkpoints per second over the last `span`, or since the first checkpoint when that is
    /// more recent: a young session would otherwise show a fraction of its rate.
    public func checkpointsPerSecond(over span: Duration = .seconds(5), now: ContinuousClock.Instant = .now) -> Double {
        let since = now - span
        let count = recent.reversed().prefix { $0.at >= since }.count
        guard let first = recent.first?.at, first > since else { return Double(count) / span.seconds }
        let covered = now - first
        return covered > .zero ? Double(count) / covered.seconds : 0
    }
}
