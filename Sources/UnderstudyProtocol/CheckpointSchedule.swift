/// When the primary takes its next checkpoint, and why: a value with no clock of its own.
///
/// Remus-style output commit makes every reply wait for the checkpoint after it. With only an
/// interval, a request/reply round trip costs up to a whole interval. Output-triggered epochs
/// end the open epoch as soon as the output gate holds a frame of it and the guest has run for
/// `minimumGap` since the last checkpoint, so a reply waits only for one short pause and its
/// acknowledgement. The interval remains the longest an epoch runs when no output waits, and
/// `maximumRate` caps how often output may trigger a checkpoint (each one pauses the guest).
/// The guest also runs at least as long as the last checkpoint paused it before output triggers
/// another: on a loaded host pauses grow, and a guest that always has output waiting would
/// otherwise spend most of its time paused; this way it keeps at least half. (The rest of a
/// checkpoint, encoding and sending, happens while the guest runs.)
///
/// Nothing here touches the output-commit rule: a triggered checkpoint is an ordinary one, and
/// its frames still leave only on its acknowledgement.
public struct CheckpointSchedule: Sendable {
    /// How output triggers checkpoints (`[replication]`'s `output_triggered`, `min_gap_ms`,
    /// `max_checkpoints_per_second`).
    public struct Policy: Sendable, Equatable {
        /// Whether output waiting in the gate ends the open epoch early.
        public var outputTriggered: Bool
        /// The guest runs at least this long between the end of one checkpoint and an
        /// output-triggered one.
        public var minimumGap: Duration
        /// Output-triggered checkpoints start at most this often per second (start to start).
        public var maximumRate: Int

        /// A client that asks one request at a time sees one checkpoint per round trip, start to
        /// start: the cap bounds its round trip from below (250/s: 4 ms), and so does the gap
        /// after a checkpoint done about 2 ms after it started. On the Debian guest (pgbench) a
        /// 250/s cap and a 2 ms gap held back 31–81 % of such replies, by up to 0.4 ms; 500/s and
        /// 1 ms cost no throughput in three alternated runs (the guest keeps at least half its time
        /// through the pause rule).
        public static let `default` = Policy(outputTriggered: true, minimumGap: .milliseconds(1), maximumRate: 500)
        /// Checkpoints on the interval only (Remus's behaviour).
        public static let intervalOnly = Policy(outputTriggered: false, minimumGap: .milliseconds(1), maximumRate: 500)

        public init(outputTriggered: Bool, minimumGap: Duration, maximumRate: Int) {
            precondition(maximumRate > 0, "the checkpoint rate cap must be positive")
            self.outputTriggered = outputTriggered
            self.minimumGap = minimumGap
            self.maximumRate = maximumRate
        }

        /// The shortest time from the start of one checkpoint to an output-triggered one.
        var minimumSpacing: Duration { .nanoseconds(1_000_000_000 / Int64(maximumRate)) }
    }

    /// What the checkpoint loop does now.
    public enum Next: Sendable, Equatable {
        /// Take a checkpoint now, for this reason.
        case checkpoint(CheckpointReason)
        /// Wait until `deadline`; `wakeOnOutput`: wake earlier when output starts waiting (then ask again).
        case wait(until: ContinuousClock.Instant, wakeOnOutput: Bool)
    }

    public let policy: Policy
    /// When the interval next ends an epoch.
    private var intervalDue: ContinuousClock.Instant
    /// The last checkpoint's start and end, and how long it paused the guest (nil before the first).
    private var last: (start: ContinuousClock.Instant, end: ContinuousClock.Instant, pause: Duration)?

    /// - Parameter now: the first checkpoint is due at once.
    public init(policy: Policy, now: ContinuousClock.Instant) {
        self.policy = policy
        intervalDue = now
    }

    /// What to do at `now`; `outputWaiting`: the gate holds frames of the open epoch.
    public func next(now: ContinuousClock.Instant, outputWaiting: Bool) -> Next {
        if now >= intervalDue { return .checkpoint(.interval) }
        guard policy.outputTriggered else { return .wait(until: intervalDue, wakeOnOutput: false) }
        guard outputWaiting else { return .wait(until: intervalDue, wakeOnOutput: true) }
        let outputDue = last.map { max($0.end + max(policy.minimumGap, $0.pause), $0.start + policy.minimumSpacing) } ?? now
        if now >= outputDue { return .checkpoint(.output) }
        return .wait(until: min(outputDue, intervalDue), wakeOnOutput: false)
    }

    /// A checkpoint taken for `reason` started at `start`, paused the guest for `pause` and was
    /// done (captured, encoded, queued) at `end`; `interval` is the interval's current choice (it
    /// adapts to the link).
    public mutating func checkpointed(_ reason: CheckpointReason, start: ContinuousClock.Instant, end: ContinuousClock.Instant,
                                      pause: Duration, interval: Duration) {
        last = (start, end, pause)
        // Interval checkpoints keep a fixed grid, so that sleeps that overshoot do not add up and
        // slow the rate; any other checkpoint restarts the epoch's clock. A checkpoint that
        // overran the interval restarts the grid instead of bursting to catch up.
        let grid = reason == .interval ? intervalDue + interval : start + interval
        intervalDue = max(grid, end)
    }
}
