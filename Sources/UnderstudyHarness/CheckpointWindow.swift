/// A primary's checkpoints over a measured window, from its metrics and status taken at the
/// window's start and end: the agent keeps pause samples only for its whole session (boot and
/// initial sync included), so the window's pauses come from the difference of the pause
/// histogram (`understudy_checkpoint_pause_seconds`), whose buckets hold the targets
/// (3 ms, 20 ms) as bounds.
public struct CheckpointWindow: Sendable, Equatable {
    public var seconds: Double
    public var checkpoints: Double
    /// The window's checkpoints by why they were taken (`understudy_checkpoints_by_reason_total`:
    /// output waiting, interval, catch-up).
    public var checkpointsByReason: [String: Double]
    public var wireBytes: Double
    /// Linear interpolation inside the bucket the quantile falls into (as Prometheus'
    /// `histogram_quantile` does), in milliseconds.
    public var pauseMillisecondsP50: Double
    public var pauseMillisecondsP99: Double
    /// The longest pause of the window: exact when the session's longest pause grew during the
    /// window (so it happened there), else the smaller of the session's longest and the upper
    /// bound of the highest bucket the window filled.
    public var pauseMillisecondsMax: Double
    public var pauseMaxIsExact: Bool
    /// Exact means over the window, from the histograms' sums and counts; nil without a sample:
    /// the pause, the ACK latency (the checkpoint captured → its ACK read: encoding, sending, the
    /// backup sealing it), and the pages per checkpoint.
    public var pauseMillisecondsMean: Double?
    public var ackMillisecondsMean: Double?
    public var dirtyPagesMean: Double?

    public static let pauseHistogram = "understudy_checkpoint_pause_seconds"
    public static let ackHistogram = "understudy_ack_latency_seconds"
    public static let dirtyPagesHistogram = "understudy_checkpoint_dirty_pages"

    /// - Parameters:
    ///   - sessionMaxBefore, sessionMaxAfter: the status's `pauseMillisecondsMax` at the start and end.
    public init(before: MetricsExposition, after: MetricsExposition, sessionMaxBefore: Double, sessionMaxAfter: Double, seconds: Double) {
        self.seconds = seconds
        checkpoints = after.total("understudy_checkpoints_total") - before.total("understudy_checkpoints_total")
        let earlierReasons = before.totals("understudy_checkpoints_by_reason_total", by: "reason")
        checkpointsByReason = after.totals("understudy_checkpoints_by_reason_total", by: "reason")
            .reduce(into: [:]) { window, reason in window[reason.key] = reason.value - (earlierReasons[reason.key] ?? 0) }
        wireBytes = after.total("understudy_checkpoint_wire_bytes_total") - before.total("understudy_checkpoint_wire_bytes_total")
        func mean(_ histogram: String) -> Double? {
            let count = after.total(histogram + "_count") - before.total(histogram + "_count")
            return count > 0 ? (after.total(histogram + "_sum") - before.total(histogram + "_sum")) / count : nil
        }
        pauseMillisecondsMean = mean(Self.pauseHistogram).map { $0 * 1000 }
        ackMillisecondsMean = mean(Self.ackHistogram).map { $0 * 1000 }
        dirtyPagesMean = mean(Self.dirtyPagesHistogram)
        let earlier = Dictionary(before.histogram(Self.pauseHistogram).map { ($0.upperBound, $0.count) }, uniquingKeysWith: { a, _ in a })
        let window = after.histogram(Self.pauseHistogram).map { (upperBound: $0.upperBound, count: $0.count - (earlier[$0.upperBound] ?? 0)) }
        pauseMillisecondsP50 = Self.quantile(0.5, window) * 1000
        pauseMillisecondsP99 = Self.quantile(0.99, window) * 1000
        if sessionMaxAfter > sessionMaxBefore {
            pauseMillisecondsMax = sessionMaxAfter
            pauseMaxIsExact = true
        } else {
            // Cumulative counts: the first bucket holding all of the window's pauses bounds the longest.
            let total = window.last?.count ?? 0
            let bound = total > 0 ? (window.first { $0.count >= total }?.upperBound ?? .infinity) * 1000 : 0
            pauseMillisecondsMax = min(bound, sessionMaxAfter)
            pauseMaxIsExact = false
        }
    }

    public var checkpointsPerSecond: Double { seconds > 0 ? checkpoints / seconds : 0 }
    public var wireMegabytesPerSecond: Double { seconds > 0 ? wireBytes / 1e6 / seconds : 0 }

    /// The `q` quantile of cumulative buckets, in the buckets' unit; 0 for an empty window.
    /// Above the highest finite bound it answers that bound (nothing better is known).
    static func quantile(_ q: Double, _ buckets: [(upperBound: Double, count: Double)]) -> Double {
        guard let total = buckets.last?.count, total > 0 else { return 0 }
        let rank = q * total
        var lowerBound = 0.0
        var below = 0.0
        for bucket in buckets {
            if bucket.count >= rank {
                guard bucket.upperBound.isFinite else { return lowerBound }
                let inBucket = bucket.count - below
                return inBucket > 0 ? lowerBound + (bucket.upperBound - lowerBound) * (rank - below) / inBucket : bucket.upperBound
            }
            lowerBound = bucket.upperBound
            below = bucket.count
        }
        return lowerBound
    }
}
