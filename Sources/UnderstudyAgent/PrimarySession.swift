import UnderstudyProtocol
import UnderstudyQEMU
import UnderstudyTransport

/// The primary's side of one session as a value with no I/O and no clock of its own: the window
/// of checkpoints in flight (`PrimarySessionStateMachine`), acknowledgements and their latencies,
/// byte accounting, the link budget and the adaptive interval it feeds, the catch-up plan, and
/// asynchronous mode's recovery-point lag. `PrimaryReplicator` reports each event with the time
/// and carries out what it returns.
struct PrimarySession {
    /// How the session brings the backup's replica up to date.
    enum Plan {
        /// One catch-up checkpoint carrying what the backlog holds after the replica's epoch.
        case catchUp(ReplicationBacklog.CatchUp)
        /// Why not a catch-up (nil: no backlog is kept, so there was never anything to catch up from).
        case fullSync(reason: String?)
    }

    /// What to do with a checkpoint just captured.
    enum Capture {
        /// Encode and queue it, and record it in the metrics with `unacknowledged` checkpoints in
        /// flight, as taken for `reason`; `catchUp`: it is the catch-up checkpoint and carries that
        /// plan too (and counts as taken for the catch-up, whatever started it).
        case send(catchUp: ReplicationBacklog.CatchUp?, unacknowledged: Int, reason: CheckpointReason)
        /// The session ended while the guest was captured: it is not sent, only remembered (a new
        /// session catches up or resynchronises).
        case discard
    }

    /// What an acknowledgement changed, for the metrics and the log.
    struct Acknowledgement: Equatable {
        /// From capture to acknowledgement, of each checkpoint it acknowledged, oldest first.
        var latencies: [Duration] = []
        /// Checkpoints still in flight.
        var unacknowledged = 0
        /// Asynchronous mode: the lag the replica reached just before it.
        var lagPeak: Duration?
        var recoveryPoint: RecoveryPointMonitor.Event?
        /// The catch-up checkpoint is acknowledged, this long after its capture.
        var caughtUp: Duration?
    }

    /// What the checkpoint loop does before the next checkpoint.
    struct Tick: Equatable {
        /// How long to keep the guest paused first (asynchronous mode's throttle); zero: not at all.
        var hold: Duration
        var recoveryPoint: RecoveryPointMonitor.Event?
    }

    /// The checkpoint between its capture and its encoding.
    private struct Encoding {
        var epoch: UInt64
        var capturedAt: ContinuousClock.Instant
        /// The previous checkpoint's capture, if any: a zero interval's span ends there.
        var previousCapture: ContinuousClock.Instant?
        var isCatchUp: Bool
    }

    private var machine: PrimarySessionStateMachine
    private var schedule: CheckpointSchedule
    /// How long the newest checkpoint captured paused the guest.
    private var lastPause: Duration = .zero
    private var interval: CheckpointIntervalController
    private var link: LinkBudget
    /// Asynchronous mode's lag bookkeeping; nil: synchronous, or until the replica is up to date.
    private var recovery: RecoveryPointMonitor?
    private let objective: RecoveryPointObjective?
    private var statistics = PrimaryStatistics()
    /// The newest epoch captured, sent or not (a session can end while one is captured).
    private var capturedThrough: UInt64 = 0
    /// When each checkpoint in flight was captured, oldest first.
    private var capturedAt: [(epoch: UInt64, at: ContinuousClock.Instant)] = []
    /// Set by the plan when the session catches the backup up: the first checkpoint carries it.
    private var pendingCatchUp: ReplicationBacklog.CatchUp?
    /// The catch-up checkpoint until it is acknowledged, and when it was captured.
    private var catchUp: (epoch: UInt64, capturedAt: ContinuousClock.Instant)?
    private var encoding: Encoding?
    /// Wire bytes of each checkpoint not yet acknowledged, and of all acknowledged ones: what
    /// the link delivered, for its throughput under backpressure.
    private var unacknowledgedBytes: [UInt64: Int] = [:]
    private(set) var acknowledgedBytes = 0
    private let pageSize: Int
    /// The sender's byte total when the catch-up started: its progress is counted from there.
    private var catchUpSenderStart = 0
    /// The outage the catch-up covers: from its base's capture to its start (nil: not known).
    private var catchUpCovers: Duration?

    /// - Parameter now: where the link budget's first span of acknowledgements starts.
    init(identity: VMIdentity, configuration: PrimaryConfiguration, now: ContinuousClock.Instant) {
        machine = PrimarySessionStateMachine(identity: identity, maxEpochsInFlight: configuration.maxEpochsInFlight,
                                             firstEpoch: configuration.firstEpoch)
        interval = CheckpointIntervalController(minimum: configuration.interval,
                                                maximum: max(configuration.interval, configuration.maximumInterval ?? configuration.interval))
        link = LinkBudget(cap: configuration.bandwidthLimit, now: now)
        schedule = CheckpointSchedule(policy: configuration.schedule, now: now)
        objective = configuration.recoveryPoint
        pageSize = Int(identity.pageSize)
    }

    /// From the catch-up's plan to its acknowledgement: the replica stays at the catch-up's base.
    private var catchingUp: Bool { pendingCatchUp != nil || catchUp != nil }

    var canSendCheckpoint: Bool { machine.canSendCheckpoint }
    var nextEpoch: UInt64 { machine.nextEpoch }
    var unacknowledged: Int { machine.inFlight.count }
    var lastAcknowledgedEpoch: UInt64? { machine.lastAcknowledgedEpoch }
    /// The last epoch this session captured, whether or not it was sent.
    var lastCapturedEpoch: UInt64 { max(machine.lastSentEpoch, capturedThrough) }

    /// The statistics as of `now`: the counters with the interval's choice and the lag.
    func statistics(now: ContinuousClock.Instant) -> PrimaryStatistics {
        var snapshot = statistics
        snapshot.interval = catchingUp ? catchUpDecision(now: now) : interval.decision
        if let recovery {
            let lag = recovery.lag(now: now)
            snapshot.lag = lag
            // As of `now`, like the lag: the loop checks the objective only between checkpoints,
            // and a catch-up can keep it from one for longer than the objective.
            snapshot.recoveryPointExceeded = recovery.isExceeded || lag > recovery.objective
            snapshot.throttle = recovery.throttle
        }
        return snapshot
    }

    /// A frame from the backup, for the window's state machine.
    mutating func received(_ frame: Frame) -> PrimarySessionStateMachine.Action { machine.received(frame) }

    /// The session is over (a failure on either side): nothing more is sent.
    mutating func end() { machine.abort() }

    /// Chooses how to bring the replica, committed at `backupCommitted`, up to date.
    /// - Parameters:
    ///   - capabilities: what the backup's WELCOME agreed.
    ///   - askBacklog: the backlog's catch-up onto an epoch, or why not; nil: no backlog is kept.
    ///     Asked only when the backup offers catch-up, because asking trims the backlog.
    mutating func plan(capabilities: Capabilities, backupCommitted: UInt64,
                       askBacklog: ((UInt64) -> Result<ReplicationBacklog.CatchUp, CatchUpRefusal>)?) -> Plan {
        let plan: Plan = if let askBacklog {
            if capabilities.contains(.catchUp) {
                switch askBacklog(backupCommitted) {
                case .success(let catchUp): .catchUp(catchUp)
                case .failure(let refusal): .fullSync(reason: refusal.reason)
                }
            } else {
                .fullSync(reason: "the backup does not offer catch-up")
            }
        } else {
            .fullSync(reason: nil)
        }
        switch plan {
        case .catchUp(let catchUp):
            pendingCatchUp = catchUp
            statistics.start = .catchUp(base: catchUp.base)
            statistics.catchUpBytesTotal = catchUp.bytes(pageSize: pageSize)
        case .fullSync(let reason):
            statistics.start = .fullSync(reason: reason)
        }
        return plan
    }

    /// The initial sync starts at `now`, to copy `bytes`: the memory and disk ranges that hold data.
    mutating func syncStarted(at now: ContinuousClock.Instant, bytes: Int) {
        statistics.syncStarted = now
        statistics.syncBytesTotal = bytes
    }

    /// The initial sync copied `bytes` more.
    mutating func synced(bytes: Int) { statistics.syncBytesDone += bytes }

    /// A pre-copy round found `bytes` more to copy: pages the guest wrote meanwhile.
    mutating func syncGrew(by bytes: Int) { statistics.syncBytesTotal += bytes }

    /// The initial sync is queued whole: `pages` pages in `wireBytes` bytes, in `duration`.
    mutating func syncSent(pages: Int, wireBytes: Int, duration: Duration) {
        statistics.syncPages = pages
        statistics.syncWireBytes = wireBytes
        statistics.syncDuration = duration
    }

    /// The replica is up to date (the initial sync or CATCH_UP_BEGIN was queued): checkpoints may
    /// follow. The link is measured from the sender's totals `sender` on; the lag from `now`
    /// after a full sync, and from the base's capture for a catch-up (the replica is still
    /// there), so a catch-up can start over the objective: the event says so.
    @discardableResult
    mutating func syncFinished(sender: FrameSender.Usage, now: ContinuousClock.Instant) -> RecoveryPointMonitor.Event? {
        machine.syncFinished()
        let replicaAsOf = pendingCatchUp.map { $0.baseCapturedAt ?? now } ?? now
        recovery = objective.map { RecoveryPointMonitor(objective: $0.objective, throttles: $0.throttleGuest, now: min(replicaAsOf, now)) }
        link.senderStarted(bytes: sender.bytes, busy: sender.busy)
        if let pendingCatchUp {
            statistics.catchUpStarted = now
            catchUpSenderStart = sender.bytes
            catchUpCovers = pendingCatchUp.baseCapturedAt.map { now - $0 }
        }
        return recovery?.check(now: now)
    }

    /// While the catch-up checkpoint is being queued: the sender's totals are `sender` at `now`.
    /// Returns an event when the lag crossed the objective meanwhile.
    mutating func catchUpProgress(sender: FrameSender.Usage, now: ContinuousClock.Instant) -> RecoveryPointMonitor.Event? {
        if catchingUp { statistics.catchUpBytesSent = max(statistics.catchUpBytesSent, sender.bytes - catchUpSenderStart) }
        return recovery?.check(now: now)
    }

    /// The interval's decision while the catch-up is on the link: the replica is behind by the
    /// outage, not by what the interval's checkpoints need. Demand is what the catch-up carries
    /// per second of the outage it covers (of the time since it started, when the base's capture
    /// is not known); the budget what the link may carry.
    private func catchUpDecision(now: ContinuousClock.Instant) -> CheckpointIntervalController.Decision {
        let span = catchUpCovers.flatMap { $0 > .zero ? $0 : nil } ?? statistics.catchUpStarted.map { now - $0 } ?? .zero
        let demand = span > .zero ? Double(statistics.catchUpBytesTotal) / span.seconds : 0
        return CheckpointIntervalController.Decision(interval: interval.interval, reason: .catchingUp, demandBytesPerSecond: demand,
                                                     budgetBytesPerSecond: link.budget)
    }

    /// What the checkpoint loop does at `now`: checkpoint, or wait (see `CheckpointSchedule`).
    /// `outputWaiting`: the output gate holds frames of the open epoch.
    func nextCheckpoint(now: ContinuousClock.Instant, outputWaiting: Bool) -> CheckpointSchedule.Next {
        schedule.next(now: now, outputWaiting: outputWaiting)
    }

    /// Where checkpoint `epoch`'s pause went (kept when it is the session's longest).
    mutating func paused(_ epoch: UInt64, _ breakdown: PauseBreakdown) { statistics.note(breakdown, epoch: epoch) }

    /// Checkpoint `epoch` (the window's `nextEpoch`), taken for `reason`, was captured at `now`,
    /// after a pause of `pause` with `dirtyPages` pages.
    mutating func captured(_ epoch: UInt64, reason: CheckpointReason, pause: Duration, dirtyPages: Int,
                           at now: ContinuousClock.Instant) -> Capture {
        // The catch-up is spent on this checkpoint even if it is not sent: the backlog recorded it,
        // and a new session plans again.
        let catchUpPlan = pendingCatchUp
        pendingCatchUp = nil
        let reason = catchUpPlan == nil ? reason : .catchUp
        capturedThrough = epoch
        lastPause = pause
        let previous = statistics.recent.last?.at
        // The session can end while the guest is captured (the backup lost, a protocol error
        // seen by the receiving thread): this checkpoint is not sent.
        guard machine.canSendCheckpoint else { return .discard }
        machine.checkpointSent(epoch)
        capturedAt.append((epoch, now))
        statistics.note(pause: pause, dirtyPages: dirtyPages, at: now)
        statistics.checkpointReasons[reason, default: 0] += 1
        recovery?.captured(epoch, at: now)
        if catchUpPlan != nil {
            catchUp = (epoch, now)
            statistics.catchUpBytesTotal += dirtyPages * pageSize
        }
        encoding = Encoding(epoch: epoch, capturedAt: now, previousCapture: previous, isCatchUp: catchUpPlan != nil)
        return .send(catchUp: catchUpPlan, unacknowledged: machine.inFlight.count, reason: reason)
    }

    /// The checkpoint `captured` said to send was encoded and queued as `output`. `sender` is the
    /// sender's totals now; `backpressure`: the window was full before the checkpoint, so the
    /// link, not the interval, set the pace. Returns the interval's new choice.
    mutating func encoded(_ output: CheckpointEncoder.Output, sender: FrameSender.Usage, backpressure: Bool,
                          now: ContinuousClock.Instant) -> CheckpointIntervalController.Decision {
        guard let encoding else { preconditionFailure("encoded without a checkpoint to send") }
        self.encoding = nil
        let epoch = encoding.epoch
        // An ACK that overtook this bookkeeping counts at once.
        if epoch <= statistics.lastAcknowledgedEpoch { acknowledgedBytes += output.wireBytes } else { unacknowledgedBytes[epoch] = output.wireBytes }
        let budget = link.update(senderBytes: sender.bytes, senderBusy: sender.busy, acknowledgedBytes: acknowledgedBytes,
                                 backpressure: backpressure, now: now)
        statistics.checkpointsSent += 1
        statistics.currentEpoch = epoch
        statistics.dirtyPages += output.pages
        statistics.rawBytes += output.rawBytes
        statistics.wireBytes += output.wireBytes
        statistics.deviceStateRawBytes += output.deviceStateRawBytes
        statistics.deviceStateWireBytes += output.deviceStateWireBytes
        statistics.framingBytes += output.framingBytes
        statistics.encodings.merge(output.encodings, uniquingKeysWith: +)
        if encoding.isCatchUp {
            statistics.catchUpPages = output.pages
            statistics.catchUpDiskWrites = output.diskWrites
            statistics.catchUpWireBytes = output.wireBytes
            // Queued whole: what is left is the link's, and its size is now exact.
            statistics.catchUpBytesTotal = max(output.wireBytes, statistics.catchUpBytesSent)
            // The outage's writes are no sample of what checkpoints at this interval need.
            return catchUpDecision(now: now)
        }
        // Demand is what checkpoints at the chosen interval would need. The time since the
        // previous capture would understate it under backpressure: the link, waiting for
        // acknowledgements, stretched that span already.
        let chosen = interval.interval
        let span = chosen > .zero ? chosen : encoding.capturedAt - (encoding.previousCapture ?? encoding.capturedAt)
        return interval.checkpointSent(wireBytes: output.wireBytes, span: span, budget: budget)
    }

    /// The backup acknowledged (committed) every epoch through `epoch`, as the window's state
    /// machine released it.
    mutating func acknowledged(through epoch: UInt64, now: ContinuousClock.Instant) -> Acknowledgement {
        var result = Acknowledgement()
        let count = capturedAt.prefix { $0.epoch <= epoch }.count
        result.latencies = capturedAt.prefix(count).map { now - $0.at }
        capturedAt.removeFirst(count)
        for latency in result.latencies { statistics.note(ackLatency: latency) }
        statistics.checkpointsAcknowledged += count
        statistics.lastAcknowledgedEpoch = epoch
        for (sent, bytes) in unacknowledgedBytes where sent <= epoch {
            acknowledgedBytes += bytes
            unacknowledgedBytes[sent] = nil
        }
        result.unacknowledged = machine.inFlight.count
        if let (peak, event) = recovery?.acknowledged(through: epoch, now: now) {
            statistics.note(lagPeak: peak)
            result.lagPeak = peak
            result.recoveryPoint = event
        }
        if let catchUp, catchUp.epoch <= epoch {
            result.caughtUp = now - catchUp.capturedAt
            statistics.catchUpDuration = result.caughtUp
            statistics.catchUpBytesSent = statistics.catchUpBytesTotal
            self.catchUp = nil
        }
        return result
    }

    /// After each checkpoint of the loop (taken for `reason`, started at `start`), at `now`:
    /// schedules the next one, checks the lag against the objective and says how long the guest
    /// is held, from the throttle the lag had set so far.
    mutating func tick(_ reason: CheckpointReason, started start: ContinuousClock.Instant, now: ContinuousClock.Instant) -> Tick {
        schedule.checkpointed(reason, start: start, end: now, pause: lastPause, interval: interval.interval)
        let throttle = recovery?.throttle ?? 0
        let event = recovery?.poll(now: now)
        // Asynchronous mode, lag over the objective: the guest stays paused for a share of
        // each interval, which slows its dirtying to what the link carries.
        return Tick(hold: throttle > 0 ? interval.interval * throttle : .zero, recoveryPoint: event)
    }

    /// The guest was held paused for `duration`, as `tick` asked.
    mutating func held(_ duration: Duration) { statistics.throttledFor += duration }
}
