/// The rules by which a primary keeps its VM protected, without I/O: the phases, the grace
/// period and policy after the backup is lost, the fence (output waits while this node cannot
/// prove it is the active copy) and the planned switchover. `VMProtector` feeds it events from
/// its threads (under one lock) and carries out the actions it returns; time is passed in.
public struct ProtectionStateMachine: Sendable {
    public enum Phase: String, Sendable, Codable {
        case connecting, syncing, protecting
        /// The backup is gone and output waits: the grace period, or the safety policy.
        case holding
        /// No backup; output passes (availability policy, or an activated VM not yet protected).
        case unprotected
        case switchingOver = "switching over"
        case switchedOver = "switched over"
        case fenced, stopped
    }

    /// How protection ended.
    public enum Outcome: Sendable, Equatable {
        case stopped
        /// The backup took over from a final checkpoint; the guest is left paused here.
        case switchedOver
        /// Another node became the active copy: this copy must stop at once.
        case fenced(String)
    }

    /// What to do once the grace period after losing the backup has passed.
    public enum PolicyAction: Sendable, Equatable {
        /// Availability: output may pass once this node holds the fence (`availabilityFence`).
        case acquireFence
        /// Safety: output stays held until a backup acknowledges again.
        case keepHolding
    }

    /// What to do when a session's checkpoint loop returned on request.
    public enum SessionEndAction: Sendable, Equatable {
        /// Close the session; the next step decides what follows.
        case close
        /// Stopped for a requested switchover: take the final checkpoint.
        case handOver
    }

    /// What to do with the output of an acknowledged checkpoint.
    public enum ReleaseAction: Sendable, Equatable {
        case release(through: UInt64)
        /// This node cannot prove it is the active copy: the output waits for the fence;
        /// `first` when this starts a withholding (worth a log line).
        case withhold(first: Bool)
    }

    /// What to do once the fence is held again after a loss.
    public struct FenceRegainedAction: Sendable, Equatable {
        /// Output passes again without acknowledgements (unprotected, or asynchronous mode).
        public var outputPasses: Bool
        /// The acknowledged output the fence kept back, to release now.
        public var release: UInt64?

        public init(outputPasses: Bool, release: UInt64?) {
            self.outputPasses = outputPasses
            self.release = release
        }
    }

    public let failover: FailoverConfiguration
    /// Asynchronous protection: output is never held for acknowledgements.
    public let asynchronous: Bool
    public private(set) var phase: Phase
    public private(set) var detail: String?
    /// Sessions that reached `protecting`.
    public private(set) var sessions = 0
    /// When the backup was lost (nil: protected, or unprotected from the start).
    public private(set) var lostAt: ContinuousClock.Instant?
    /// A switchover was requested and not yet finished.
    public private(set) var switchoverPending = false
    /// Why the fence was lost, while it is being re-acquired (output waits meanwhile).
    public private(set) var fenceLossReason: String?
    /// Another node holds the fence: this copy must stop.
    public private(set) var fencedBy: String?
    /// Another node claimed the VM after this node's witness term (why): this copy must stop, and
    /// may never resume.
    public private(set) var supersession: String?
    /// The latest acknowledged epoch whose output the fence kept back.
    public private(set) var withheldRelease: UInt64?

    /// - Parameter unprotected: the VM already runs without a backup and its output passes (activation).
    public init(failover: FailoverConfiguration, asynchronous: Bool, unprotected: Bool, now: ContinuousClock.Instant) {
        self.failover = failover
        self.asynchronous = asynchronous
        phase = unprotected ? .unprotected : .connecting
        lostAt = unprotected ? nil : now
    }

    /// The configuration names no backup: the VM runs unprotected for good.
    public mutating func noBackupConfigured() {
        set(.unprotected, "not protected: the configuration names no backup (peer.address)")
    }

    /// Before each step of the loop: whether protection ends, and how.
    /// - Parameter stopReason: why the agent stops (nil: it does not).
    public mutating func end(stopReason: String?) -> Outcome? {
        if let stopReason {
            set(.stopped, stopReason)
            return .stopped
        }
        if let supersession {
            set(.fenced, supersession)
            return .fenced(supersession)
        }
        if let fencedBy {
            let reason = fenceLossReason ?? "witness lease lost"
            set(.fenced, "\(fencedBy) is the active copy: \(reason)")
            return .fenced("\(fencedBy) is the active copy (\(reason))")
        }
        return nil
    }

    /// Before each connection attempt: the policy, once the grace period after losing the backup is over.
    public mutating func graceElapsed(now: ContinuousClock.Instant) -> PolicyAction? {
        guard phase == .holding, let lostAt, now - lostAt >= failover.grace else { return nil }
        switch failover.policy {
        case .availability:
            return .acquireFence
        case .safety:
            set(.holding, "backup lost: output held until a backup acknowledges a checkpoint (policy safety)")
            return .keepHolding
        }
    }

    /// The availability policy's attempt at the fence; true: output passes now, unprotected.
    /// - Parameter holder: who holds the fence instead (nil: the witness is out of reach).
    public mutating func availabilityFence(held: Bool, holder: String?) -> Bool {
        guard held else {
            set(.holding, "backup lost; output held: the witness lease is not held (\(holder.map { "held by \($0)" } ?? "unreachable"))")
            return false
        }
        set(.unprotected, "backup lost: running unprotected (policy availability)")
        return true
    }

    /// A session connected and is about to synchronise the backup; true: output is held from
    /// the next epoch on (synchronous protection).
    public mutating func sessionSyncing() -> Bool {
        set(.syncing, nil)
        return !asynchronous
    }

    /// A session could not connect or synchronise.
    public mutating func sessionFailed(_ error: String) {
        detail = "backup unreachable: \(error)"
        if phase == .syncing || phase == .connecting { phase = lostAt == nil || asynchronous ? .unprotected : .holding }
    }

    /// A session synchronised the backup and checkpoints: protected.
    public mutating func sessionStarted() {
        set(.protecting, nil)
        lostAt = nil
        sessions += 1
    }

    /// Whether the session's checkpoint loop should return (a switchover or the fence needs the loop).
    public var checkpointsShouldStop: Bool { switchoverPending || fencedBy != nil || supersession != nil }

    /// The session's checkpoint loop returned on request (not for a lost backup).
    public func sessionEnded() -> SessionEndAction {
        switchoverPending ? .handOver : .close
    }

    /// The backup is lost: output of unacknowledged checkpoints is held (unless `asynchronous`)
    /// for the grace period, counted from `now`.
    public mutating func backupLost(_ error: String, now: ContinuousClock.Instant) {
        phase = asynchronous ? .unprotected : .holding
        lostAt = now
        detail = "backup lost: \(error)"
    }

    /// How long to wait before the next connection attempt: the reconnect interval, or less
    /// when the grace period ends sooner.
    public func reconnectDelay(now: ContinuousClock.Instant) -> Duration {
        guard let lostAt else { return failover.reconnect }
        let grace = failover.grace - (now - lostAt)
        return grace > .zero ? min(failover.reconnect, grace) : failover.reconnect
    }

    /// An acknowledgement arrived; `fenceValid`: this node can prove it is the active copy.
    public mutating func acknowledged(through epoch: UInt64, fenceValid: Bool) -> ReleaseAction {
        guard fenceValid else {
            defer { withheldRelease = epoch }
            return .withhold(first: withheldRelease == nil)
        }
        withheldRelease = nil
        return .release(through: epoch)
    }

    /// The fence's holder lost the right to be active: output stops until it is regained.
    public mutating func fenceLost(_ reason: String) {
        fenceLossReason = reason
    }

    /// Whether the fence should be tried for again (lost, and nobody else is known to hold it).
    public var wantsFence: Bool { fenceLossReason != nil && fencedBy == nil && supersession == nil }

    /// The fence is held again: nobody else took it while the witness was out of reach.
    public mutating func fenceRegained() -> FenceRegainedAction {
        defer {
            fenceLossReason = nil
            withheldRelease = nil
        }
        return FenceRegainedAction(outputPasses: phase == .unprotected || asynchronous, release: withheldRelease)
    }

    /// Another node holds the fence: this copy ends at the next step.
    public mutating func fenceHeld(by holder: String) {
        fencedBy = holder
    }

    /// Regaining the fence found a newer witness term (`reason`): even with the witness key free,
    /// another copy was active after this one, so this copy ends at the next step, for good.
    public mutating func fenceSuperseded(_ reason: String) {
        supersession = reason
    }

    /// The operator asks for a switchover; the reason it is refused, or nil when it is under way.
    /// - Parameter becomingBackupError: why this node could not serve as the backup (nil: it can).
    public mutating func switchoverRequested(becomingBackupError: String?) -> String? {
        guard phase == .protecting else { return "the VM is \(phase.rawValue), not protecting: a switchover needs a backup in sync" }
        if let becomingBackupError { return "this node could not become the backup: \(becomingBackupError)" }
        guard !switchoverPending else { return "a switchover is already under way" }
        switchoverPending = true
        return nil
    }

    /// The session stopped for the switchover: the final checkpoint is taken with the guest paused.
    public mutating func finalCheckpointStarted() {
        set(.switchingOver, "final checkpoint")
    }

    /// The final checkpoint failed: the guest resumes here, its output held as after a lost backup.
    public mutating func finalCheckpointFailed(_ error: String, now: ContinuousClock.Instant) -> ControlReply {
        switchoverPending = false
        phase = .holding
        lostAt = now
        return ControlReply(ok: false, message: "switchover failed, the VM keeps running here: \(error)")
    }

    /// The backup acknowledged the final checkpoint and this node let go of the fence: it took over.
    public mutating func switchedOver(at epoch: UInt64) -> ControlReply {
        switchoverPending = false
        set(.switchedOver, "the backup took over at checkpoint \(epoch)")
        return ControlReply(ok: true, message: "switched over at checkpoint \(epoch): the peer is now the primary")
    }

    private mutating func set(_ phase: Phase, _ detail: String?) {
        self.phase = phase
        self.detail = detail
    }
}
