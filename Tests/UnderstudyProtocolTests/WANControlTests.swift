import Testing
@testable import UnderstudyProtocol

/// The pure pieces of WAN replication, on an injected clock.
@Suite("WAN control: token bucket, adaptive interval, recovery point")
struct WANControlTests {
    static let t0 = ContinuousClock.now

    @Test("a token bucket lets a burst through, then holds the stream to its rate")
    func tokenBucket() {
        var bucket = TokenBucket(bytesPerSecond: 1_000_000, burst: 100_000, now: Self.t0)
        #expect(bucket.take(100_000, now: Self.t0) == .zero)
        // Debt of 50 KB at 1 MB/s: 50 ms.
        #expect(bucket.take(50_000, now: Self.t0) == .milliseconds(50))
        // 150 ms later the debt is paid and 100 KB more accrued, capped at the burst.
        #expect(bucket.take(100_000, now: Self.t0 + .milliseconds(150)) == .zero)
        // Over 10 s of 1 MB chunks the wait adds up to the rate: about 10 s for 10 MB beyond the burst.
        var now = Self.t0 + .seconds(1)
        var bucket2 = TokenBucket(bytesPerSecond: 1_000_000, burst: 100_000, now: now)
        for _ in 0..<10 { now += bucket2.take(1_000_000, now: now) }
        let elapsed = now - (Self.t0 + .seconds(1))
        #expect(elapsed >= .milliseconds(9_850) && elapsed <= .milliseconds(9_950), "\(elapsed)")
    }

    @Test("the interval stays shortest while the link carries the dirty rate")
    func intervalStaysShortest() {
        var controller = CheckpointIntervalController(minimum: .milliseconds(25), maximum: .seconds(2))
        for _ in 0..<20 { controller.checkpointSent(wireBytes: 10_000, span: .milliseconds(25), budget: 2_500_000) }
        #expect(controller.interval == .milliseconds(25))
        #expect(controller.decision.reason == .shortest)
        // No budget known: nothing to fit, the shortest interval.
        controller.checkpointSent(wireBytes: 10_000_000, span: .milliseconds(25), budget: nil)
        #expect(controller.decision.reason == .shortest)
    }

    @Test("the interval stretches to fit the budget, and shrinks back when the guest calms down")
    func intervalFitsTheLink() {
        var controller = CheckpointIntervalController(minimum: .milliseconds(25), maximum: .seconds(2))
        // A guest rewriting a 200 KB working set: each checkpoint is 200 KB whatever the interval,
        // so 8 MB/s at 25 ms; the link carries 2.5 MB/s (20 Mbit/s).
        for _ in 0..<40 {
            controller.checkpointSent(wireBytes: 200_000, span: controller.interval, budget: 2_500_000)
        }
        let fitted = controller.interval
        #expect(controller.decision.reason == .fitted)
        // 200 KB per checkpoint must fit 80% of 2.5 MB/s: at least 100 ms.
        #expect(fitted >= .milliseconds(100) && fitted <= .milliseconds(300), "\(fitted)")
        #expect(controller.decision.demandBytesPerSecond <= 2_500_000 * CheckpointIntervalController.utilisation * 1.05)
        // The guest goes quiet: back to the shortest interval.
        for _ in 0..<40 { controller.checkpointSent(wireBytes: 1_000, span: controller.interval, budget: 2_500_000) }
        #expect(controller.interval == .milliseconds(25))
        #expect(controller.decision.reason == .shortest)
    }

    @Test("a guest streaming through fresh memory pins the interval at its maximum, and says so")
    func intervalAtMaximum() {
        var controller = CheckpointIntervalController(minimum: .milliseconds(25), maximum: .milliseconds(500))
        // 10 MB/s of fresh pages: bytes per checkpoint grow with the interval.
        for _ in 0..<40 {
            let span = controller.interval
            controller.checkpointSent(wireBytes: Int(10_000_000 * span.seconds), span: span, budget: 2_500_000)
        }
        #expect(controller.interval == .milliseconds(500))
        #expect(controller.decision.reason == .longest)
        #expect(controller.decision.budgetBytesPerSecond == 2_500_000)
    }

    @Test("a fixed interval (maximum = minimum) never moves")
    func fixedInterval() {
        var controller = CheckpointIntervalController(minimum: .milliseconds(25), maximum: .milliseconds(25))
        for _ in 0..<10 { controller.checkpointSent(wireBytes: 10_000_000, span: .milliseconds(25), budget: 1_000) }
        #expect(controller.interval == .milliseconds(25))
    }

    @Test("the lag is the age of the newest acknowledged capture; crossing the objective raises and clears the alert")
    func recoveryPointAlert() {
        var monitor = RecoveryPointMonitor(objective: .seconds(1), throttles: false, now: Self.t0)
        monitor.captured(1, at: Self.t0 + .milliseconds(100))
        monitor.captured(2, at: Self.t0 + .milliseconds(200))
        #expect(monitor.poll(now: Self.t0 + .milliseconds(500)) == nil)
        let ack1 = monitor.acknowledged(through: 1, now: Self.t0 + .milliseconds(600))
        #expect(ack1.peak == .milliseconds(600))
        #expect(ack1.event == nil)
        #expect(monitor.lag(now: Self.t0 + .milliseconds(600)) == .milliseconds(500))
        // Nothing acknowledged for a while: the lag passes the objective.
        #expect(monitor.poll(now: Self.t0 + .milliseconds(1_200)) == .exceeded(lag: .milliseconds(1_100)))
        #expect(monitor.isExceeded)
        #expect(monitor.poll(now: Self.t0 + .milliseconds(1_300)) == nil, "raised once per excursion")
        // An acknowledgement of a capture older than the objective does not clear it...
        #expect(monitor.acknowledged(through: 2, now: Self.t0 + .milliseconds(1_400)).event == nil)
        // ...one of a recent capture does.
        monitor.captured(3, at: Self.t0 + .milliseconds(1_500))
        let ack3 = monitor.acknowledged(through: 3, now: Self.t0 + .milliseconds(1_600))
        #expect(ack3.peak == .milliseconds(1_400))
        #expect(ack3.event == .recovered(lasted: .milliseconds(400)))
        #expect(monitor.throttle == 0, "throttling was not asked for")
    }

    @Test("throttling ramps up while the lag is over the objective and releases once it is well under")
    func throttle() {
        var monitor = RecoveryPointMonitor(objective: .seconds(1), throttles: true, now: Self.t0)
        var now = Self.t0 + .seconds(2)
        _ = monitor.poll(now: now)
        #expect(monitor.throttle == RecoveryPointMonitor.firstThrottle)
        for _ in 0..<30 {
            now += .milliseconds(25)
            _ = monitor.poll(now: now)
        }
        #expect(monitor.throttle == RecoveryPointMonitor.maxThrottle)
        monitor.captured(9, at: now)
        _ = monitor.acknowledged(through: 9, now: now + .milliseconds(50))
        // Between 80% and 100% of the objective the throttle holds; below, it eases off to zero.
        for _ in 0..<40 { _ = monitor.poll(now: now + .milliseconds(100)) }
        #expect(monitor.throttle == 0)
    }
}
