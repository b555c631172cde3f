/// What the replication link may carry, in bytes per second: the lowest of the configured cap,
/// the throughput the sender achieved while it was busy, and the bytes the backup acknowledged
/// per second while the window of checkpoints in flight was full (backpressure). A value with no
/// clock: the I/O layer passes the time and its counters at each checkpoint, and hands the budget
/// to `CheckpointIntervalController`.
///
/// The sender is only busy when the socket's buffers are full; a window of a few checkpoints
/// may never fill them, and then the acknowledgements, not the sender, show the link's pace.
/// That measurement stands after the backpressure ended (a stretched interval is what ended
/// it), and only rises when the link is seen carrying more; a shorter interval that brings
/// the backpressure back measures it again.
public struct LinkBudget: Sendable, Equatable {
    /// The cap on the stream, in bytes per second; nil: none.
    public let cap: Double?
    /// Less busy time than this says nothing about the link: the previous measurement stands.
    public static let minimumBusy = Duration.milliseconds(20)
    /// Acknowledgements are counted over spans at least this long, so that one ACK's burst is no rate.
    public static let acknowledgementSpan = Duration.milliseconds(500)

    /// The throughput the sender achieved while busy; nil: not measured yet.
    public private(set) var senderThroughput: Double?
    /// The throughput the acknowledgements showed under backpressure; nil: not measured yet.
    public private(set) var acknowledgedThroughput: Double?
    /// The sender's totals where its current measurement starts.
    private var senderBytes = 0
    private var senderBusy = Duration.zero
    /// Where the current span of acknowledgements starts, and whether the window was full in it.
    private var spanStart: ContinuousClock.Instant
    private var spanAcknowledgedBytes = 0
    private var spanBackpressure = false

    /// - Parameters:
    ///   - cap: the bandwidth limit in bytes per second; nil: none.
    ///   - now: where the first span of acknowledgements starts.
    public init(cap: Int?, now: ContinuousClock.Instant) {
        self.cap = cap.map(Double.init)
        spanStart = now
    }

    /// The lowest of what is known; nil: no cap and nothing measured yet.
    public var budget: Double? { [cap, senderThroughput, acknowledgedThroughput].compactMap { $0 }.min() }

    /// The sender's totals when checkpoints start: what it wrote before (the initial sync) is no
    /// sample of the link under checkpoints.
    public mutating func senderStarted(bytes: Int, busy: Duration) {
        senderBytes = bytes
        senderBusy = busy
    }

    /// At each checkpoint: the sender's totals (bytes written, time busy writing them), the wire
    /// bytes the backup acknowledged so far, and whether the window was full before this
    /// checkpoint. Returns the budget.
    public mutating func update(senderBytes bytes: Int, senderBusy busy: Duration, acknowledgedBytes: Int, backpressure: Bool,
                                now: ContinuousClock.Instant) -> Double? {
        if busy - senderBusy >= Self.minimumBusy {
            senderThroughput = Double(bytes - senderBytes) / (busy - senderBusy).seconds
            senderStarted(bytes: bytes, busy: busy)
        }
        let span = now - spanStart
        if span >= Self.acknowledgementSpan {
            let rate = Double(acknowledgedBytes - spanAcknowledgedBytes) / span.seconds
            if spanBackpressure, rate > 0 {
                acknowledgedThroughput = rate
            } else if let measured = acknowledgedThroughput, rate > measured {
                acknowledgedThroughput = rate
            }
            spanStart = now
            spanAcknowledgedBytes = acknowledgedBytes
            spanBackpressure = backpressure
        } else if backpressure {
            spanBackpressure = true
        }
        return budget
    }
}
