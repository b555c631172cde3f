import Testing
@testable import UnderstudyAgent
import UnderstudyProtocol
import UnderstudySystem
import UnderstudyTransport

/// The primary's session bookkeeping on an injected clock: no VM, no socket, no sleep.
@Suite("PrimarySession")
struct PrimarySessionTests {
    static let t0 = ContinuousClock.now
    static let identity = VMIdentity(id: "vm-session-test", memorySize: 1 << 20)

    static func configuration(window: Int = 4, firstEpoch: UInt64 = 1, interval: Duration = .milliseconds(10), maximumInterval: Duration? = nil,
                              cap: Int? = nil, recoveryPoint: RecoveryPointObjective? = nil) -> PrimaryConfiguration {
        var configuration = PrimaryConfiguration(nodeName: "primary", backup: Endpoint(host: "127.0.0.1", port: 1),
                                                 tls: TLSConfiguration(directory: "/nonexistent", node: "primary", peer: "backup"),
                                                 interval: interval, maxEpochsInFlight: window)
        configuration.firstEpoch = firstEpoch
        configuration.maximumInterval = maximumInterval
        configuration.bandwidthLimit = cap
        configuration.recoveryPoint = recoveryPoint
        return configuration
    }

    static func welcome(_ capabilities: Capabilities = .supported, committed: UInt64 = 0) -> Frame {
        Message.welcome(Welcome(capabilities: capabilities, committedEpoch: committed)).frame
    }

    /// A session whose backup accepted, with a replica committed at `committed`.
    static func welcomed(_ configuration: PrimaryConfiguration = configuration(), committed: UInt64 = 0) -> PrimarySession {
        var session = PrimarySession(identity: identity, configuration: configuration, now: t0)
        #expect(session.received(welcome(committed: committed)) == .startSync(.supported, backupCommittedEpoch: committed))
        return session
    }

    /// A session past a full sync at `t0`; the sender wrote `sender` during the sync.
    static func protecting(_ configuration: PrimaryConfiguration = configuration(), sender: FrameSender.Usage = FrameSender.Usage()) -> PrimarySession {
        var session = welcomed(configuration)
        guard case .fullSync(reason: nil) = session.plan(capabilities: .supported, backupCommitted: 0, askBacklog: nil) else {
            Issue.record("without a backlog a session synchronises in full, with no reason to give")
            return session
        }
        session.syncFinished(sender: sender, now: t0)
        #expect(session.canSendCheckpoint)
        return session
    }

    static func output(pages: Int = 1, wireBytes: Int = 1_000, diskWrites: Int = 0, encodings: [PageEncoding: Int] = [:]) -> CheckpointEncoder.Output {
        var output = CheckpointEncoder.Output(frameChecksum: .xxh3)
        output.pages = pages
        output.rawBytes = pages * 4096
        output.wireBytes = wireBytes
        output.diskWrites = diskWrites
        output.encodings = encodings
        return output
    }

    /// The sender's totals after writing `bytes`.
    static func usage(_ bytes: Int) -> FrameSender.Usage {
        var usage = FrameSender.Usage()
        usage.bytes = bytes
        return usage
    }

    /// What `captured` asked for: nil when it was `.discard`.
    static func sent(_ capture: PrimarySession.Capture) -> (catchUp: ReplicationBacklog.CatchUp?, unacknowledged: Int, reason: CheckpointReason)? {
        if case .send(let catchUp, let unacknowledged, let reason) = capture { (catchUp, unacknowledged, reason) } else { nil }
    }

    /// Captures checkpoint `nextEpoch` at `at` and encodes it right away.
    @discardableResult
    static func checkpoint(_ session: inout PrimarySession, at: ContinuousClock.Instant, output: CheckpointEncoder.Output = output(),
                           sender: FrameSender.Usage = FrameSender.Usage(), backpressure: Bool = false) -> CheckpointIntervalController.Decision {
        let capture = session.captured(session.nextEpoch, reason: .interval, pause: .milliseconds(1), dirtyPages: output.pages, at: at)
        #expect(sent(capture) != nil)
        return session.encoded(output, sender: sender, backpressure: backpressure, now: at)
    }

    /// The backup's ACK through `epoch`, as the receiving thread handles it.
    static func ack(_ session: inout PrimarySession, _ epoch: UInt64, at: ContinuousClock.Instant) -> PrimarySession.Acknowledgement {
        #expect(session.received(Message.ack(epoch: epoch).frame) == .release(throughEpoch: epoch))
        return session.acknowledged(through: epoch, now: at)
    }

    @Test("checkpoints are sent while the window has room; acknowledgements free it and time each checkpoint from its capture")
    func windowAndLatencies() {
        var session = Self.protecting(Self.configuration(window: 2))
        #expect(session.nextEpoch == 1)
        let first = Self.sent(session.captured(1, reason: .interval, pause: .milliseconds(2), dirtyPages: 10, at: Self.t0 + .milliseconds(10)))
        #expect(first?.catchUp == nil && first?.unacknowledged == 1)
        _ = session.encoded(Self.output(), sender: FrameSender.Usage(), backpressure: false, now: Self.t0 + .milliseconds(11))
        Self.checkpoint(&session, at: Self.t0 + .milliseconds(20))
        #expect(!session.canSendCheckpoint, "a full window is backpressure")
        #expect(session.unacknowledged == 2)

        let one = Self.ack(&session, 1, at: Self.t0 + .milliseconds(50))
        #expect(one == PrimarySession.Acknowledgement(latencies: [.milliseconds(40)], unacknowledged: 1))
        #expect(session.canSendCheckpoint)
        Self.checkpoint(&session, at: Self.t0 + .milliseconds(60))
        // Acknowledgements are cumulative: one ACK times every checkpoint it covers, oldest first.
        let three = Self.ack(&session, 3, at: Self.t0 + .milliseconds(100))
        #expect(three.latencies == [.milliseconds(80), .milliseconds(40)])
        #expect(three.unacknowledged == 0)

        let statistics = session.statistics(now: Self.t0 + .milliseconds(100))
        #expect(statistics.checkpointsSent == 3)
        #expect(statistics.currentEpoch == 3)
        #expect(statistics.checkpointsAcknowledged == 3)
        #expect(statistics.lastAcknowledgedEpoch == 3)
        #expect(statistics.ackLatencies == [.milliseconds(40), .milliseconds(80), .milliseconds(40)])
        #expect(statistics.pauses == [.milliseconds(2), .milliseconds(1), .milliseconds(1)])
        #expect(statistics.recent.map(\.at) == [10, 20, 60].map { Self.t0 + .milliseconds($0) })
        #expect(statistics.lag == nil, "synchronous mode has no lag")
        #expect(session.lastCapturedEpoch == 3)
    }

    @Test("bytes are accounted per checkpoint, and acknowledged bytes count at once when the ACK overtakes the bookkeeping")
    func byteAccounting() {
        var session = Self.protecting()
        Self.checkpoint(&session, at: Self.t0 + .milliseconds(10), output: Self.output(pages: 2, wireBytes: 3_000, encodings: [.lz4: 2]))
        #expect(session.acknowledgedBytes == 0)
        _ = Self.ack(&session, 1, at: Self.t0 + .milliseconds(20))
        #expect(session.acknowledgedBytes == 3_000)

        // Checkpoint 2 is acknowledged while it is still being encoded.
        #expect(Self.sent(session.captured(2, reason: .interval, pause: .milliseconds(1), dirtyPages: 3, at: Self.t0 + .milliseconds(30))) != nil)
        _ = Self.ack(&session, 2, at: Self.t0 + .milliseconds(35))
        _ = session.encoded(Self.output(pages: 3, wireBytes: 500, encodings: [.lz4: 1, .zero: 2]), sender: FrameSender.Usage(),
                            backpressure: false, now: Self.t0 + .milliseconds(40))
        #expect(session.acknowledgedBytes == 3_500)

        // Checkpoint 3's bytes wait for its ACK.
        Self.checkpoint(&session, at: Self.t0 + .milliseconds(50), output: Self.output(pages: 1, wireBytes: 700, encodings: [.raw: 1]))
        #expect(session.acknowledgedBytes == 3_500)
        _ = Self.ack(&session, 3, at: Self.t0 + .milliseconds(60))
        #expect(session.acknowledgedBytes == 4_200)

        let statistics = session.statistics(now: Self.t0 + .milliseconds(60))
        #expect(statistics.dirtyPages == 6)
        #expect(statistics.rawBytes == 6 * 4096)
        #expect(statistics.wireBytes == 4_200)
        #expect(statistics.encodings == [.lz4: 3, .zero: 2, .raw: 1])
    }

    @Test("the initial sync's progress and totals")
    func syncAccounting() {
        var session = Self.welcomed()
        session.syncStarted(at: Self.t0, bytes: 1 << 20)
        session.synced(bytes: 4096)
        session.synced(bytes: 8192)
        session.syncGrew(by: 3 * 4096)
        session.syncSent(pages: 259, wireBytes: 70_000, duration: .milliseconds(300))
        let statistics = session.statistics(now: Self.t0)
        #expect(statistics.syncStarted == Self.t0)
        #expect(statistics.syncBytesDone == 12_288)
        #expect(statistics.syncBytesTotal == (1 << 20) + 12_288)
        #expect(statistics.syncPages == 259 && statistics.syncWireBytes == 70_000 && statistics.syncDuration == .milliseconds(300))
    }

    @Test("the interval stretches to fit the cap, with demand measured over the chosen interval")
    func intervalFitsTheCap() {
        var session = Self.protecting(Self.configuration(maximumInterval: .seconds(1), cap: 1_000_000))
        var decision: CheckpointIntervalController.Decision?
        var now = Self.t0
        // 100 KB per checkpoint at 10 ms is 10 MB/s against a 1 MB/s cap.
        for _ in 0..<10 {
            now += .milliseconds(10)
            let epoch = session.nextEpoch
            decision = Self.checkpoint(&session, at: now, output: Self.output(pages: 25, wireBytes: 100_000))
            _ = Self.ack(&session, epoch, at: now)
        }
        #expect(decision?.budgetBytesPerSecond == 1_000_000)
        #expect(decision?.reason == .fitted)
        // 100 KB must fit 80 % of 1 MB/s: 125 ms.
        #expect((decision?.interval ?? .zero) >= .milliseconds(100), "\(String(describing: decision))")
        #expect(session.statistics(now: now).interval == decision)
        // The epoch after a checkpoint may run the whole stretched interval.
        let interval = decision?.interval ?? .zero
        _ = session.tick(.output, started: now, now: now)
        #expect(session.nextCheckpoint(now: now + interval - .milliseconds(1), outputWaiting: false)
            == .wait(until: now + interval, wakeOnOutput: true))
        #expect(session.nextCheckpoint(now: now + interval, outputWaiting: false) == .checkpoint(.interval))
    }

    @Test("back to back (a zero interval), demand is measured from the previous capture")
    func zeroIntervalDemand() {
        var session = Self.protecting(Self.configuration(interval: .zero))
        let first = Self.checkpoint(&session, at: Self.t0 + .milliseconds(10), output: Self.output(wireBytes: 50_000))
        #expect(first.demandBytesPerSecond == 0, "the first checkpoint has no previous capture")
        let second = Self.checkpoint(&session, at: Self.t0 + .milliseconds(60), output: Self.output(wireBytes: 50_000))
        #expect(abs(second.demandBytesPerSecond - 1_000_000) < 1)
        #expect(second.interval == .zero && second.reason == .shortest)
    }

    @Test("the link budget is measured from the sender's totals at the end of the sync, and from the acknowledgements")
    func linkBudgetFromTheSession() {
        // The sync wrote 10 MB in 5 s of busy time; checkpoints then write 100 KB in 100 ms: 1 MB/s.
        var session = Self.protecting(Self.configuration(maximumInterval: .seconds(1)),
                                      sender: { var usage = FrameSender.Usage(); usage.bytes = 10_000_000; usage.busy = .seconds(5); return usage }())
        var usage = FrameSender.Usage()
        usage.bytes = 10_100_000
        usage.busy = .milliseconds(5_100)
        let decision = Self.checkpoint(&session, at: Self.t0 + .milliseconds(10), sender: usage)
        #expect(abs((decision.budgetBytesPerSecond ?? 0) - 1_000_000) < 1, "\(decision)")

        // Without a busy sender, acknowledgements under backpressure show the pace: the window was
        // full before checkpoint 2, and 600 KB were acknowledged in the first second.
        var paced = Self.protecting(Self.configuration(window: 1, maximumInterval: .seconds(1)))
        Self.checkpoint(&paced, at: Self.t0 + .milliseconds(10), output: Self.output(wireBytes: 300_000))
        _ = Self.ack(&paced, 1, at: Self.t0 + .milliseconds(300))
        Self.checkpoint(&paced, at: Self.t0 + .milliseconds(310), output: Self.output(wireBytes: 300_000), backpressure: true)
        _ = Self.ack(&paced, 2, at: Self.t0 + .milliseconds(600))
        let measured = Self.checkpoint(&paced, at: Self.t0 + .milliseconds(1_000), output: Self.output(wireBytes: 300_000))
        #expect(abs((measured.budgetBytesPerSecond ?? 0) - 600_000) < 1, "\(measured)")
    }

    @Test("without a backlog, or a backup that offers catch-up, the session synchronises in full and says why; the backlog is asked only when it can help")
    func planningAFullSync() {
        var asked: [UInt64] = []
        var noCapability = Self.welcomed()
        guard case .fullSync(let reason) = noCapability.plan(capabilities: Capabilities.supported.subtracting(.catchUp), backupCommitted: 9,
                                                             askBacklog: { asked.append($0); return .failure(CatchUpRefusal(reason: "unused")) }) else {
            Issue.record("expected a full sync")
            return
        }
        #expect(reason == "the backup does not offer catch-up")
        #expect(asked.isEmpty, "asking trims the backlog: it is not asked in vain")
        #expect(noCapability.statistics(now: Self.t0).start == .fullSync(reason: "the backup does not offer catch-up"))

        var refused = Self.welcomed(committed: 9)
        guard case .fullSync(let why) = refused.plan(capabilities: .supported, backupCommitted: 9,
                                                     askBacklog: { asked.append($0); return .failure(CatchUpRefusal(reason: "journal overflowed")) }) else {
            Issue.record("expected a full sync")
            return
        }
        #expect(why == "journal overflowed" && asked == [9])
        #expect(refused.statistics(now: Self.t0).start == .fullSync(reason: "journal overflowed"))

        var fresh = Self.welcomed()
        guard case .fullSync(reason: nil) = fresh.plan(capabilities: .supported, backupCommitted: 0, askBacklog: nil) else {
            Issue.record("without a backlog there is nothing to catch up from, and no reason to give")
            return
        }
        #expect(fresh.statistics(now: Self.t0).start == .fullSync(reason: nil))
    }

    @Test("a catch-up plan rides on the first checkpoint only, and the catch-up is timed from its capture to its ACK")
    func catchUp() {
        let plan = ReplicationBacklog.CatchUp(base: 7, entries: [.init(epoch: 8, pages: [1, 2], journalRange: nil, changes: [])], tail: nil)
        var session = Self.welcomed(Self.configuration(firstEpoch: 9), committed: 7)
        guard case .catchUp(let chosen) = session.plan(capabilities: .supported, backupCommitted: 7, askBacklog: { _ in .success(plan) }) else {
            Issue.record("expected a catch-up")
            return
        }
        #expect(chosen.base == 7 && chosen.resentPages == [1, 2])
        #expect(session.statistics(now: Self.t0).start == .catchUp(base: 7))
        session.syncFinished(sender: FrameSender.Usage(), now: Self.t0)

        let first = Self.sent(session.captured(9, reason: .interval, pause: .milliseconds(1), dirtyPages: 40, at: Self.t0 + .milliseconds(10)))
        #expect(first?.catchUp?.base == 7)
        _ = session.encoded(Self.output(pages: 42, wireBytes: 90_000, diskWrites: 3), sender: FrameSender.Usage(), backpressure: false,
                            now: Self.t0 + .milliseconds(20))
        #expect(first?.reason == .catchUp, "the catch-up checkpoint counts as that, whatever started it")
        let second = Self.sent(session.captured(10, reason: .output, pause: .milliseconds(1), dirtyPages: 5, at: Self.t0 + .milliseconds(30)))
        #expect(second != nil && second?.catchUp == nil && second?.reason == .output)
        _ = session.encoded(Self.output(pages: 5, wireBytes: 2_000), sender: FrameSender.Usage(), backpressure: false,
                            now: Self.t0 + .milliseconds(30))

        #expect(Self.ack(&session, 9, at: Self.t0 + .milliseconds(410)).caughtUp == .milliseconds(400))
        #expect(Self.ack(&session, 10, at: Self.t0 + .milliseconds(420)).caughtUp == nil)
        let statistics = session.statistics(now: Self.t0 + .milliseconds(420))
        #expect(statistics.catchUpPages == 42 && statistics.catchUpDiskWrites == 3 && statistics.catchUpWireBytes == 90_000)
        #expect(statistics.catchUpDuration == .milliseconds(400))
        #expect(statistics.syncWireBytes == 0)
        #expect(statistics.checkpointReasons == [.catchUp: 1, .output: 1])
    }

    @Test("a checkpoint captured after the session ended is discarded but counts as captured; numbering continues across sessions")
    func capturedAfterTheEnd() {
        var session = Self.protecting(Self.configuration(firstEpoch: 21))
        #expect(session.nextEpoch == 21 && session.lastCapturedEpoch == 20)
        Self.checkpoint(&session, at: Self.t0 + .milliseconds(10))
        // The receiving thread saw the backup fail while the guest was being captured.
        session.end()
        #expect(!session.canSendCheckpoint)
        #expect(Self.sent(session.captured(22, reason: .interval, pause: .milliseconds(1), dirtyPages: 7, at: Self.t0 + .milliseconds(20))) == nil)
        #expect(session.lastCapturedEpoch == 22, "the next session starts after the discarded checkpoint")
        let statistics = session.statistics(now: Self.t0 + .milliseconds(20))
        #expect(statistics.checkpointsSent == 1 && statistics.currentEpoch == 21 && statistics.recent.count == 1)
    }

    @Test("asynchronous mode: the lag is the age of the newest acknowledged capture; the alert is raised, the guest held, and both cleared")
    func recoveryPointLag() {
        var session = Self.protecting(Self.configuration(recoveryPoint: RecoveryPointObjective(objective: .milliseconds(100), throttleGuest: true)))
        Self.checkpoint(&session, at: Self.t0 + .milliseconds(10))
        #expect(session.tick(.interval, started: Self.t0 + .milliseconds(10), now: Self.t0 + .milliseconds(20)) == PrimarySession.Tick(hold: .zero))
        #expect(session.statistics(now: Self.t0 + .milliseconds(20)).lag == .milliseconds(20), "nothing acknowledged: the lag runs from the end of the sync")

        // Over the objective: the alert now, the throttle from the next checkpoint on.
        #expect(session.tick(.interval, started: Self.t0 + .milliseconds(150), now: Self.t0 + .milliseconds(150)) == PrimarySession.Tick(hold: .zero,
                                                                                       recoveryPoint: .exceeded(lag: .milliseconds(150))))
        let exceeded = session.statistics(now: Self.t0 + .milliseconds(150))
        #expect(exceeded.recoveryPointExceeded && exceeded.throttle == 0.2)
        let held = session.tick(.interval, started: Self.t0 + .milliseconds(160), now: Self.t0 + .milliseconds(160))
        #expect(held == PrimarySession.Tick(hold: .milliseconds(10) * 0.2))
        session.held(held.hold)

        // An ACK of a recent capture brings the lag back under the objective.
        Self.checkpoint(&session, at: Self.t0 + .milliseconds(165))
        let acknowledgement = Self.ack(&session, 2, at: Self.t0 + .milliseconds(170))
        #expect(acknowledgement.lagPeak == .milliseconds(170))
        #expect(acknowledgement.recoveryPoint == .recovered(lasted: .milliseconds(20)))
        let recovered = session.statistics(now: Self.t0 + .milliseconds(170))
        #expect(recovered.lag == .milliseconds(5))
        #expect(!recovered.recoveryPointExceeded)
        #expect(recovered.lagPeaks == [.milliseconds(170)])
        #expect(recovered.throttledFor == .milliseconds(10) * 0.2)
    }

    @Test("asynchronous mode: a catch-up longer than the objective shows the lag over it, and the interval says the catch-up is on the link")
    func catchUpOverTheObjective() {
        let objective = RecoveryPointObjective(objective: .seconds(3), throttleGuest: false)
        var session = Self.welcomed(Self.configuration(firstEpoch: 9, cap: 3_750_000, recoveryPoint: objective), committed: 7)
        let plan = ReplicationBacklog.CatchUp(base: 7, entries: [.init(epoch: 8, pages: [1], journalRange: 0..<100_000_000, changes: [])], tail: nil)
        _ = session.plan(capabilities: .supported, backupCommitted: 7, askBacklog: { _ in .success(plan) })
        session.syncFinished(sender: FrameSender.Usage(), now: Self.t0)
        #expect(Self.sent(session.captured(9, reason: .interval, pause: .milliseconds(1), dirtyPages: 10, at: Self.t0 + .milliseconds(10))) != nil)

        // The catch-up checkpoint is still being queued: no checkpoint loop tick has run since.
        let behind = session.statistics(now: Self.t0 + .seconds(4))
        #expect(behind.lag == .seconds(4))
        #expect(behind.recoveryPointExceeded, "the lag is over the objective, whether or not the loop checked it yet")
        #expect(behind.interval?.reason.rawValue == "catchingUp")
        #expect(behind.interval?.budgetBytesPerSecond == 3_750_000)
        #expect((behind.interval?.demandBytesPerSecond ?? 0) > 3_750_000, "the catch-up needs more than the link carries")
    }

    @Test("a catch-up's lag runs from its base's capture; the alarm is raised while it is queued, and its progress is counted")
    func catchUpLagFromItsBase() {
        let objective = RecoveryPointObjective(objective: .seconds(3), throttleGuest: false)
        var session = Self.welcomed(Self.configuration(firstEpoch: 9, recoveryPoint: objective), committed: 7)
        // The base was captured at t0, the link cut right after, and back 2 s later.
        let plan = ReplicationBacklog.CatchUp(base: 7, entries: [.init(epoch: 8, pages: [1, 2], journalRange: 0..<1_000_000, changes: [])],
                                              tail: 1_000_000..<3_000_000, baseCapturedAt: Self.t0)
        _ = session.plan(capabilities: .supported, backupCommitted: 7, askBacklog: { _ in .success(plan) })
        #expect(session.statistics(now: Self.t0).catchUpBytesTotal == 2 * 4096 + 3_000_000)
        #expect(session.syncFinished(sender: Self.usage(500), now: Self.t0 + .seconds(2)) == nil)
        #expect(session.statistics(now: Self.t0 + .seconds(2)).lag == .seconds(2), "the replica is at the base until the catch-up is acknowledged")
        #expect(Self.sent(session.captured(9, reason: .interval, pause: .milliseconds(1), dirtyPages: 10, at: Self.t0 + .seconds(2))) != nil)
        #expect(session.statistics(now: Self.t0 + .seconds(2)).catchUpBytesTotal == 12 * 4096 + 3_000_000)

        #expect(session.catchUpProgress(sender: Self.usage(1_000_500), now: Self.t0 + .milliseconds(2_500)) == nil)
        #expect(session.catchUpProgress(sender: Self.usage(2_000_500), now: Self.t0 + .seconds(4))
                == .exceeded(lag: .seconds(4)))
        let queued = session.statistics(now: Self.t0 + .seconds(4))
        #expect(queued.catchUpBytesSent == 2_000_000 && queued.catchUpStarted == Self.t0 + .seconds(2))
        #expect(queued.recoveryPointExceeded && queued.catchUpDuration == nil)
        #expect(queued.interval?.demandBytesPerSecond == Double(12 * 4096 + 3_000_000) / 2, "what it carries per second of the 2 s outage")

        let decision = session.encoded(Self.output(pages: 12, wireBytes: 2_900_000), sender: Self.usage(2_900_500),
                                       backpressure: false, now: Self.t0 + .seconds(5))
        #expect(decision.reason == .catchingUp && decision.interval == .milliseconds(10))
        #expect(session.statistics(now: Self.t0 + .seconds(5)).catchUpBytesTotal == 2_900_000, "queued whole: its wire bytes")

        Self.checkpoint(&session, at: Self.t0 + .seconds(5))

        // Acknowledged: the replica is as of the catch-up's capture, and the interval is the controller's again.
        let acknowledgement = Self.ack(&session, 9, at: Self.t0 + .milliseconds(5_500))
        #expect(acknowledgement.lagPeak == .milliseconds(5_500) && acknowledgement.caughtUp == .milliseconds(3_500))
        #expect(acknowledgement.recoveryPoint == nil, "3.5 s after the catch-up's capture the lag is still over the objective")
        let caughtUp = session.statistics(now: Self.t0 + .milliseconds(5_500))
        #expect(caughtUp.interval?.reason == .shortest && caughtUp.catchUpBytesSent == caughtUp.catchUpBytesTotal)
        #expect(Self.ack(&session, 10, at: Self.t0 + .seconds(6)).recoveryPoint == .recovered(lasted: .seconds(2)))
    }
}
