import Testing
import UnderstudyHarness

@Suite("CheckpointWindow (a primary's checkpoints between two scrapes of its metrics)")
struct CheckpointWindowTests {
    /// An exposition as the agent serves it, with cumulative pause buckets (counts per bound in ms).
    static func exposition(checkpoints: Int, wireBytes: Int, buckets: [(String, Int)]) -> MetricsExposition {
        var text = """
            # HELP understudy_checkpoints_total Checkpoints captured
            # TYPE understudy_checkpoints_total counter
            understudy_checkpoints_total{vm="web-1"} \(checkpoints)
            understudy_checkpoint_wire_bytes_total{vm="web-1"} \(wireBytes)
            # TYPE understudy_checkpoint_pause_seconds histogram

            """
        for (bound, count) in buckets {
            text += "understudy_checkpoint_pause_seconds_bucket{vm=\"web-1\",le=\"\(bound)\"} \(count)\n"
        }
        text += "understudy_checkpoint_pause_seconds_count{vm=\"web-1\"} \(buckets.last?.1 ?? 0)\n"
        return MetricsExposition(text: text)
    }

    static let bounds = ["0.00025", "0.0005", "0.001", "0.002", "0.003", "0.005", "0.01", "0.02", "0.05", "0.1", "+Inf"]

    static func cumulative(_ perBucket: [Int]) -> [(String, Int)] {
        var total = 0
        return zip(bounds, perBucket).map { bound, count in
            total += count
            return (bound, total)
        }
    }

    @Test("the exposition's samples, totals and buckets in order of their bounds")
    func parse() {
        let metrics = Self.exposition(checkpoints: 7, wireBytes: 70_000, buckets: Self.cumulative([0, 0, 1, 5, 1, 0, 0, 0, 0, 0, 0]))
        #expect(metrics.total("understudy_checkpoints_total") == 7)
        #expect(metrics.total("understudy_checkpoint_wire_bytes_total") == 70_000)
        #expect(metrics.total("understudy_no_such_metric") == 0)
        let histogram = metrics.histogram(CheckpointWindow.pauseHistogram)
        #expect(histogram.map(\.upperBound) == [0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05, 0.1, .infinity])
        #expect(histogram.map(\.count) == [0, 0, 1, 6, 7, 7, 7, 7, 7, 7, 7])
    }

    @Test("only the window's pauses count: a long pause during boot, before it, is left out")
    func windowLeavesOutEarlierPauses() {
        // Before: 10 boot-time pauses, one of them over 100 ms. The window adds 100 pauses:
        // 50 in (1, 2] ms, 49 in (2, 3] ms, one in (5, 10] ms.
        let before = Self.exposition(checkpoints: 10, wireBytes: 1_000_000, buckets: Self.cumulative([0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 1]))
        let after = Self.exposition(checkpoints: 110, wireBytes: 6_000_000, buckets: Self.cumulative([0, 0, 0, 59, 49, 0, 1, 0, 0, 0, 1]))
        let window = CheckpointWindow(before: before, after: after, sessionMaxBefore: 650, sessionMaxAfter: 650, seconds: 2)
        #expect(window.checkpoints == 100)
        #expect(window.checkpointsPerSecond == 50)
        #expect(window.wireMegabytesPerSecond == 2.5)
        // The 50th of 100 lies at the end of the (1, 2] ms bucket; the 99th in the (2, 3] ms one.
        #expect(abs(window.pauseMillisecondsP50 - 2.0) < 1e-9)
        #expect(window.pauseMillisecondsP99 > 2 && window.pauseMillisecondsP99 <= 3)
        // The session's 650 ms pause came before the window: the window's longest is at most 10 ms.
        #expect(window.pauseMillisecondsMax == 10)
        #expect(!window.pauseMaxIsExact)
    }

    @Test("the window's checkpoints by reason")
    func reasons() {
        func exposition(output: Int, interval: Int) -> MetricsExposition {
            MetricsExposition(text: """
                understudy_checkpoints_total{vm="web-1"} \(output + interval)
                understudy_checkpoints_by_reason_total{vm="web-1",reason="output"} \(output)
                understudy_checkpoints_by_reason_total{vm="web-1",reason="interval"} \(interval)
                understudy_checkpoints_by_reason_total{vm="web-1",reason="catch_up"} 1
                """)
        }
        let before = exposition(output: 10, interval: 90)
        #expect(before.totals("understudy_checkpoints_by_reason_total", by: "reason") == ["output": 10, "interval": 90, "catch_up": 1])
        let window = CheckpointWindow(before: before, after: exposition(output: 410, interval: 95), sessionMaxBefore: 1,
                                      sessionMaxAfter: 1, seconds: 2)
        #expect(window.checkpoints == 405)
        #expect(window.checkpointsByReason == ["output": 400, "interval": 5, "catch_up": 0])
    }

    @Test("a new longest pause during the window is the window's, exactly")
    func newMaximumIsExact() {
        let before = Self.exposition(checkpoints: 10, wireBytes: 0, buckets: Self.cumulative([0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0]))
        let after = Self.exposition(checkpoints: 20, wireBytes: 0, buckets: Self.cumulative([0, 0, 0, 19, 0, 0, 0, 0, 0, 1, 0]))
        let window = CheckpointWindow(before: before, after: after, sessionMaxBefore: 1.9, sessionMaxAfter: 73.5, seconds: 1)
        #expect(window.pauseMillisecondsMax == 73.5)
        #expect(window.pauseMaxIsExact)
    }

    @Test("a window without checkpoints has no pauses")
    func emptyWindow() {
        let metrics = Self.exposition(checkpoints: 5, wireBytes: 10, buckets: Self.cumulative([0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0]))
        let window = CheckpointWindow(before: metrics, after: metrics, sessionMaxBefore: 1, sessionMaxAfter: 1, seconds: 3)
        #expect(window.checkpoints == 0)
        #expect(window.pauseMillisecondsP50 == 0)
        #expect(window.pauseMillisecondsMax == 0)
        #expect(window.pauseMillisecondsMean == nil && window.ackMillisecondsMean == nil && window.dirtyPagesMean == nil)
    }

    @Test("the window's means come from the histograms' sums and counts, the session's before it left out")
    func means() {
        func exposition(checkpoints: Int, pauseSeconds: Double, ackSeconds: Double, pages: Int) -> MetricsExposition {
            MetricsExposition(text: """
                understudy_checkpoints_total{vm="web-1"} \(checkpoints)
                understudy_checkpoint_pause_seconds_sum{vm="web-1"} \(pauseSeconds)
                understudy_checkpoint_pause_seconds_count{vm="web-1"} \(checkpoints)
                understudy_ack_latency_seconds_sum{vm="web-1"} \(ackSeconds)
                understudy_ack_latency_seconds_count{vm="web-1"} \(checkpoints)
                understudy_checkpoint_dirty_pages_sum{vm="web-1"} \(pages)
                understudy_checkpoint_dirty_pages_count{vm="web-1"} \(checkpoints)
                """)
        }
        // Boot: 10 checkpoints of 50 ms pauses and 5,000 pages. The window: 100 of 1.5 ms, 2 ms and 300 pages.
        let before = exposition(checkpoints: 10, pauseSeconds: 0.5, ackSeconds: 0.1, pages: 50_000)
        let after = exposition(checkpoints: 110, pauseSeconds: 0.65, ackSeconds: 0.3, pages: 80_000)
        let window = CheckpointWindow(before: before, after: after, sessionMaxBefore: 50, sessionMaxAfter: 50, seconds: 1)
        #expect(abs((window.pauseMillisecondsMean ?? 0) - 1.5) < 1e-9)
        #expect(abs((window.ackMillisecondsMean ?? 0) - 2) < 1e-9)
        #expect(window.dirtyPagesMean == 300)
    }
}
