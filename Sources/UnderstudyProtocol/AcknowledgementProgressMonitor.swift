/// Progress detection as a value with no I/O: a backup that answers heartbeats but stops
/// acknowledging (a hung disk, a long msync) is as good as lost, because the primary's held
/// output waits for its acknowledgements. The caller polls with the clock and the session's
/// counters, so the rule is tested without sockets or sleeps.
///
/// The session progresses while nothing is in flight, while acknowledgements advance, or while
/// the stream itself moves: frames were waiting for the sender and its byte count grew (a large
/// catch-up on a thin link takes long to acknowledge but keeps the link busy). A stalled backup
/// stops reading, the connection's buffers fill, and the sender stops writing, so only a real
/// stall lets the clock run out.
public struct AcknowledgementProgressMonitor: Sendable {
    /// What the session looked like at one poll.
    public struct Observation: Sendable, Equatable {
        /// Checkpoints sent and not yet acknowledged.
        public var inFlight: Int
        /// The last acknowledged epoch; nil before the first acknowledgement.
        public var acknowledgedThrough: UInt64?
        /// Bytes the sender has written to the connection so far.
        public var bytesWritten: Int
        /// Frames waiting for the sender (the connection, not the producer, sets the pace).
        public var framesQueued: Int

        public init(inFlight: Int, acknowledgedThrough: UInt64?, bytesWritten: Int, framesQueued: Int) {
            self.inFlight = inFlight
            self.acknowledgedThrough = acknowledgedThrough
            self.bytesWritten = bytesWritten
            self.framesQueued = framesQueued
        }
    }

    /// No progress for this long, with checkpoints in flight, means the backup is lost.
    public let timeout: Duration
    private var previous: Observation?
    /// When the session last progressed.
    private var progressedAt: ContinuousClock.Instant
    public private(set) var isStalled = false

    public init(timeout: Duration, now: ContinuousClock.Instant) {
        precondition(timeout > .zero)
        self.timeout = timeout
        progressedAt = now
    }

    /// Records `observation`; returns, once, how long the session had made no progress when
    /// that reaches the timeout.
    public mutating func poll(_ observation: Observation, now: ContinuousClock.Instant) -> Duration? {
        defer { previous = observation }
        if progressed(to: observation) { progressedAt = max(progressedAt, now) }
        let stalled = now - progressedAt
        guard !isStalled, stalled >= timeout else { return nil }
        isStalled = true
        return stalled
    }

    private func progressed(to observation: Observation) -> Bool {
        if observation.inFlight == 0 { return true }
        guard let previous else { return false }
        if observation.acknowledgedThrough != previous.acknowledgedThrough { return true }
        // Counted only when frames were already waiting at the previous poll: heartbeats written
        // into an idle connection's free buffer space are no sign that the backup reads.
        return previous.framesQueued > 0 && observation.bytesWritten > previous.bytesWritten
    }
}
