import Testing
@testable import UnderstudyAgent

/// The checkpoint rate in status: over the last five seconds, and over the session so far while
/// it is younger (a session 2.5 s old at 40 checkpoints/s showed 20/s).
@Suite("primary statistics")
struct PrimaryStatisticsTests {
    private static func statistics(checkpoints: Int, every gap: Duration, from start: ContinuousClock.Instant) -> PrimaryStatistics {
        var statistics = PrimaryStatistics()
        for index in 0..<checkpoints {
            statistics.note(pause: .milliseconds(1), dirtyPages: 10, at: start + gap * index)
        }
        return statistics
    }

    @Test func aYoungSessionShowsItsRealRate() {
        let start = ContinuousClock.now
        let statistics = Self.statistics(checkpoints: 100, every: .milliseconds(25), from: start)
        let rate = statistics.checkpointsPerSecond(now: start + .milliseconds(2500))
        #expect(rate > 39 && rate < 41, "\(rate)")
    }

    @Test func anOlderSessionCountsTheLastFiveSeconds() {
        let start = ContinuousClock.now
        var statistics = Self.statistics(checkpoints: 400, every: .milliseconds(25), from: start)
        #expect(abs(statistics.checkpointsPerSecond(now: start + .seconds(10)) - 40) < 0.5)
        // The loop stopped 3 s ago: the last five seconds hold two seconds' checkpoints.
        #expect(abs(statistics.checkpointsPerSecond(now: start + .seconds(13)) - 16) < 0.5)
        statistics = PrimaryStatistics()
        #expect(statistics.checkpointsPerSecond() == 0, "no checkpoint yet")
    }
}
