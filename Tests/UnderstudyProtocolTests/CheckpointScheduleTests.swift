import Testing
import UnderstudyProtocol

@Suite("Checkpoint schedule: the interval, and output that ends the epoch early")
struct CheckpointScheduleTests {
    static let t0 = ContinuousClock.now
    static let interval = Duration.milliseconds(25)

    static func ms(_ n: Int) -> ContinuousClock.Instant { t0 + .milliseconds(n) }

    /// A schedule whose first checkpoint ran from 0 to 1 ms, for the interval.
    static func afterFirst(_ policy: CheckpointSchedule.Policy = .default) -> CheckpointSchedule {
        var schedule = CheckpointSchedule(policy: policy, now: t0)
        #expect(schedule.next(now: t0, outputWaiting: false) == .checkpoint(.interval), "the first checkpoint is due at once")
        schedule.checkpointed(.interval, start: t0, end: ms(1), pause: .milliseconds(1), interval: interval)
        return schedule
    }

    @Test("no output waiting: the loop sleeps until the interval, ready to wake for output")
    func quietGuest() {
        let schedule = Self.afterFirst()
        #expect(schedule.next(now: Self.ms(2), outputWaiting: false) == .wait(until: Self.ms(25), wakeOnOutput: true))
        #expect(schedule.next(now: Self.ms(25), outputWaiting: false) == .checkpoint(.interval))
    }

    @Test("output waiting ends the epoch once the guest ran the minimum gap and the rate cap allows")
    func outputTriggers() {
        // Gap 2 ms after the end (1 ms): 3 ms; 250/s from the start (0): 4 ms. The later wins.
        let schedule = Self.afterFirst(CheckpointSchedule.Policy(outputTriggered: true, minimumGap: .milliseconds(2), maximumRate: 250))
        #expect(schedule.next(now: Self.ms(2), outputWaiting: true) == .wait(until: Self.ms(4), wakeOnOutput: false))
        #expect(schedule.next(now: Self.ms(4), outputWaiting: true) == .checkpoint(.output))
        // A longer gap than the rate's spacing: the gap decides.
        let gapped = Self.afterFirst(CheckpointSchedule.Policy(outputTriggered: true, minimumGap: .milliseconds(5), maximumRate: 1000))
        #expect(gapped.next(now: Self.ms(2), outputWaiting: true) == .wait(until: Self.ms(6), wakeOnOutput: false))
        #expect(gapped.next(now: Self.ms(6), outputWaiting: true) == .checkpoint(.output))
    }

    @Test("a long pause (a loaded host) keeps the guest running at least as long before output triggers the next")
    func longPausesDoNotStarveTheGuest() {
        var schedule = CheckpointSchedule(policy: .default, now: Self.t0)
        schedule.checkpointed(.interval, start: Self.t0, end: Self.ms(10), pause: .milliseconds(8), interval: Self.interval)
        #expect(schedule.next(now: Self.ms(12), outputWaiting: true) == .wait(until: Self.ms(18), wakeOnOutput: false))
        #expect(schedule.next(now: Self.ms(18), outputWaiting: true) == .checkpoint(.output))
        // Encoding and sending happen while the guest runs: a long checkpoint with a short pause
        // waits only the minimum gap.
        schedule.checkpointed(.output, start: Self.ms(20), end: Self.ms(30), pause: .milliseconds(1), interval: Self.interval)
        #expect(schedule.next(now: Self.ms(30), outputWaiting: true) == .wait(until: Self.ms(31), wakeOnOutput: false))
    }

    @Test("by default, a client asking one request at a time may see its round trip under 4 ms")
    func defaultsLeaveRoomForFastRoundTrips() {
        // Such a client's round trip is the time from one checkpoint's start to the next: the reply
        // waits for the checkpoint and its ACK, then the next request for the guest. Measured on the
        // Debian guest (pgbench, one connection, a fast phase of the host): a checkpoint was done
        // 1.9 ms after it started, and the next reply held 3.6–4.1 ms after it started. A 250/s cap
        // (4 ms start to start) held back 81 % of those replies, by 0.36 ms at the median.
        var schedule = CheckpointSchedule(policy: .default, now: Self.t0)
        schedule.checkpointed(.output, start: Self.t0, end: Self.t0 + .microseconds(1900), pause: .milliseconds(1), interval: Self.interval)
        #expect(schedule.next(now: Self.t0 + .microseconds(3000), outputWaiting: true) == .checkpoint(.output))
    }

    @Test("off: output waits for the interval, as in Remus")
    func intervalOnly() {
        let schedule = Self.afterFirst(.intervalOnly)
        #expect(schedule.next(now: Self.ms(5), outputWaiting: true) == .wait(until: Self.ms(25), wakeOnOutput: false))
        #expect(schedule.next(now: Self.ms(25), outputWaiting: true) == .checkpoint(.interval))
    }

    @Test("the interval stays the longest an epoch runs, whatever the rate cap")
    func intervalBoundsTheCap() {
        // A cap of 1 per second would put output after the interval: the interval comes first.
        let schedule = Self.afterFirst(CheckpointSchedule.Policy(outputTriggered: true, minimumGap: .zero, maximumRate: 1))
        #expect(schedule.next(now: Self.ms(2), outputWaiting: true) == .wait(until: Self.ms(25), wakeOnOutput: false))
        #expect(schedule.next(now: Self.ms(25), outputWaiting: true) == .checkpoint(.interval))
    }

    @Test("interval checkpoints keep a grid; an output checkpoint restarts the epoch's clock")
    func grid() {
        var schedule = Self.afterFirst()
        // Taken 3 ms late (a sleep overshot): the next stays on the grid at 50 ms.
        schedule.checkpointed(.interval, start: Self.ms(28), end: Self.ms(29), pause: .milliseconds(1), interval: Self.interval)
        #expect(schedule.next(now: Self.ms(30), outputWaiting: false) == .wait(until: Self.ms(50), wakeOnOutput: true))
        // Output at 35 ms: the epoch after it may run the whole interval, to 60 ms.
        schedule.checkpointed(.output, start: Self.ms(35), end: Self.ms(36), pause: .milliseconds(1), interval: Self.interval)
        #expect(schedule.next(now: Self.ms(50), outputWaiting: false) == .wait(until: Self.ms(60), wakeOnOutput: true))
        // A checkpoint that overran the interval restarts the grid at its end, without a burst.
        schedule.checkpointed(.interval, start: Self.ms(60), end: Self.ms(100), pause: .milliseconds(1), interval: Self.interval)
        #expect(schedule.next(now: Self.ms(100), outputWaiting: false) == .checkpoint(.interval))
        schedule.checkpointed(.interval, start: Self.ms(100), end: Self.ms(101), pause: .milliseconds(1), interval: Self.interval)
        #expect(schedule.next(now: Self.ms(101), outputWaiting: false) == .wait(until: Self.ms(125), wakeOnOutput: true))
    }

    @Test("a zero interval runs back to back, output or not")
    func backToBack() {
        var schedule = CheckpointSchedule(policy: .default, now: Self.t0)
        schedule.checkpointed(.interval, start: Self.t0, end: Self.ms(1), pause: .milliseconds(1), interval: .zero)
        #expect(schedule.next(now: Self.ms(1), outputWaiting: false) == .checkpoint(.interval))
        #expect(schedule.next(now: Self.ms(1), outputWaiting: true) == .checkpoint(.interval))
    }
}
