import Foundation
import Logging
import Synchronization
import UnderstudyProtocol
import UnderstudyQEMU
import UnderstudyTransport

/// Keeps a running VM protected whenever its backup can be reached: connects, synchronises,
/// checkpoints; when the backup is lost, holds the output of unacknowledged checkpoints for the
/// grace period, then follows the policy (continue unprotected, or keep holding), and keeps
/// trying to protect the VM again with a full resynchronisation (re-protection). The same loop
/// runs on a primary that booted the VM and on a backup that activated it.
///
/// Output leaves only on an acknowledgement, or unprotected after the grace period, and in both
/// cases only while this node is the active copy (`ActiveCopyFence.isValid`).
public final class VMProtector: @unchecked Sendable {
    public enum Phase: String, Sendable {
        case connecting, syncing, protecting
        /// The backup is gone and output waits: the grace period, or the safety policy.
        case holding
        /// No backup; output passes (availability policy, or an activated VM not yet protected).
        case unprotected
        case switchingOver = "switching over"
        case switchedOver = "switched over"
        case fenced, stopped
    }

    /// How `run` ended.
    public enum Outcome: Sendable, Equatable {
        case stopped
        /// The backup took over from a final checkpoint; the guest is left paused here.
        case switchedOver
        /// Another node became the active copy: this copy must stop at once.
        case fenced(String)
    }

    public let source: QEMUCheckpointSource
    public let devices: GuestDevices
    private let configuration: AgentConfiguration
    /// Nil when the configuration names no peer to protect to (peer.address).
    private let primaryConfiguration: PrimaryConfiguration?
    private let fence: ActiveCopyFence
    private let logger: Logger
    private let stop: StopSignal
    private let state: Mutex<State>
    /// The checkpoint this VM was activated from (nil: booted here).
    private let activatedFromEpoch: UInt64?
    private let wake = NSCondition()
    /// Unacknowledged checkpoints and disk writes kept across sessions for catch-up; nil: none kept.
    private let backlog: ReplicationBacklog?
    /// Asynchronous protection: output is never held for acknowledgements.
    private var asynchronous: Bool { configuration.replication.mode == .asynchronous }

    private struct State {
        var phase: Phase
        var detail: String?
        var replicator: PrimaryReplicator?
        var switchover: SwitchoverRequest?
        /// The fence was lost and is being re-acquired (output waits meanwhile).
        var fenceLost: String?
        /// Another node holds the fence: this copy must stop.
        var fencedBy: String?
        var sessions = 0
        var lostAt: ContinuousClock.Instant?
        /// The latest acknowledged epoch whose output the fence kept back.
        var withheldRelease: UInt64?
    }

    private final class SwitchoverRequest: @unchecked Sendable {
        let done = NSCondition()
        var reply: ControlReply?
    }

    /// - Parameters:
    ///   - firstEpoch: the next checkpoint number (after the epoch an activated VM started from).
    ///   - unprotected: the VM already runs without a backup and its output passes (activation).
    ///   - metrics: where every session records its checkpoints; nil: nowhere.
    public init(configuration: AgentConfiguration, source: QEMUCheckpointSource, devices: GuestDevices, fence: ActiveCopyFence,
                firstEpoch: UInt64, unprotected: Bool, logger: Logger, stop: StopSignal, metrics: AgentMetrics? = nil) throws {
        self.configuration = configuration
        if configuration.peerAddress != nil {
            var primary = try configuration.primary()
            primary.heartbeat = configuration.heartbeat
            primary.metrics = metrics
            primary.firstEpoch = firstEpoch
            // A reconnection attempt must not stall the loop for long: the policy and stop are checked between them.
            primary.connectTimeout = min(primary.connectTimeout, max(configuration.failover.reconnect, .seconds(1)))
            let replication = configuration.replication
            backlog = replication.catchUpJournalLimit > 0
                ? ReplicationBacklog(memorySize: Int(source.identity.memorySize), journalPath: replication.catchUpJournal,
                                     journalLimit: replication.catchUpJournalLimit)
                : nil
            primary.backlog = backlog
            primaryConfiguration = primary
        } else {
            primaryConfiguration = nil
            backlog = nil
        }
        self.source = source
        self.devices = devices
        self.fence = fence
        self.logger = logger
        self.stop = stop
        state = Mutex(State(phase: unprotected ? .unprotected : .connecting, lostAt: unprotected ? nil : .now))
        activatedFromEpoch = unprotected ? firstEpoch - 1 : nil
    }

    public var phase: Phase { state.withLock { $0.phase } }

    /// The current session's counters (nil between sessions).
    public var statistics: PrimaryStatistics? { state.withLock { $0.replicator }?.statistics }

    /// The fence's holder lost the right to be active (witness lease lost): output stops at once.
    public func fenceLost(_ reason: String) {
        devices.setOutputMode(.outputCommit)
        state.withLock { $0.fenceLost = reason }
        poke()
    }

    /// Runs until stopped, switched over or fenced. Call on a dedicated thread.
    public func run() -> Outcome {
        // The datagram path tells the backup this node lives even while the replication link is down.
        let done = StopSignal(signals: [])
        let datagrams = configuration.heartbeatDatagrams.flatMap { path in
            try? HeartbeatDatagrams(listen: path.listen, peerAddress: path.peer, vm: configuration.vm.id, node: configuration.nodeName,
                                    peerName: configuration.peerName, heard: {})
        }
        if configuration.heartbeatDatagrams != nil, datagrams == nil {
            logger.error("cannot open the datagram heartbeat path", metadata: ["listen": "\(configuration.heartbeatDatagrams!.listen)"])
        }
        let beating = datagrams.map { datagrams in
            JoinableThread(name: "heartbeat-udp-send") { [interval = configuration.heartbeat.interval] in
                repeat { datagrams.send() } while !done.wait(timeout: interval)
            }
        }
        let fenceWatch = JoinableThread(name: "fence-watch") { [self] in
            while !done.wait(timeout: .milliseconds(100)) { regainFence() }
        }
        defer {
            done.trigger("done")
            beating?.join()
            fenceWatch.join()
            datagrams?.close()
        }
        return protect()
    }

    private func protect() -> Outcome {
        guard let primaryConfiguration else {
            set(.unprotected, "not protected: the configuration names no backup (peer.address)")
            while true {
                if let outcome = checkEnd() { return outcome }
                waitForRetry()
            }
        }
        var nextEpoch = primaryConfiguration.firstEpoch
        var lastError = ""
        while true {
            if let outcome = checkEnd() { return outcome }
            applyPolicyIfDue()
            keepRecordedDiskWrites()
            var sessionConfiguration = primaryConfiguration
            sessionConfiguration.firstEpoch = nextEpoch
            let replicator = PrimaryReplicator(source: source, configuration: sessionConfiguration, disk: devices.diskImage, logger: logger,
                                               onRelease: { [weak self] epoch in self?.release(through: epoch) })
            state.withLock { $0.replicator = replicator }
            do {
                try replicator.start(beforeSync: { [self] in
                    set(.syncing, nil)
                    if !asynchronous { devices.holdOutputFromNextEpoch() }
                }, beforeFullSync: { [devices] in devices.discardRecordedDiskWrites() })
            } catch {
                devices.cancelPendingHold()
                replicator.abandon()
                let text = "\(error)"
                if text != lastError { logger.warning("cannot protect the VM: the backup is not reachable", metadata: ["error": "\(text)"]) }
                lastError = text
                state.withLock {
                    $0.replicator = nil
                    $0.detail = "backup unreachable: \(text)"
                    if $0.phase == .syncing || $0.phase == .connecting { $0.phase = $0.lostAt == nil || asynchronous ? .unprotected : .holding }
                }
                waitForRetry()
                continue
            }
            lastError = ""
            state.withLock {
                $0.phase = .protecting
                $0.detail = nil
                $0.lostAt = nil
                $0.sessions += 1
            }
            logger.notice("protecting", metadata: ["vm": "\(configuration.vm.id)", "backup": "\(primaryConfiguration.backup)",
                                                   "first-epoch": "\(nextEpoch)"])
            var failure: Error?
            do {
                try replicator.runCheckpoints(shouldStop: { [self] in stop.isSet || state.withLock { $0.switchover != nil || $0.fencedBy != nil } })
            } catch {
                failure = error
            }
            nextEpoch = max(replicator.lastCapturedEpoch, nextEpoch - 1) + 1
            if failure == nil, let request = state.withLock({ $0.switchover }) {
                if let outcome = handOver(replicator, request) { return outcome }
                nextEpoch = replicator.lastCapturedEpoch + 1
                continue
            }
            if failure == nil {
                replicator.stop()
                state.withLock { $0.replicator = nil }
                continue
            }
            replicator.abandon()
            state.withLock {
                $0.replicator = nil
                $0.phase = asynchronous ? .unprotected : .holding
                $0.lostAt = .now
                $0.detail = "backup lost: \(failure!)"
            }
            if asynchronous {
                logger.error("backup lost: the replica falls behind until the link is back (asynchronous mode: output passes)",
                             metadata: ["error": "\(failure!)", "catch-up": "\(backlog == nil ? "off" : "on")"])
            } else {
                logger.error("backup lost: output of unacknowledged checkpoints is held", metadata: [
                    "error": "\(failure!)", "grace-ms": "\(configuration.failover.grace.wholeMilliseconds)",
                    "policy": "\(configuration.failover.policy)"])
            }
        }
    }

    /// Between sessions: the disk writes recorded since the last checkpoint go to the catch-up
    /// journal (or are forgotten when no catch-up is possible: the next session copies the disk).
    private func keepRecordedDiskWrites() {
        let changes = devices.takeRecordedDiskWrites()
        guard let overflow = backlog?.spill(changes) else { return }
        logger.warning("the next connection to the backup resynchronises in full", metadata: ["why": "\(overflow)"])
    }

    /// Why this node could not serve as the backup after a switchover (nil: it can).
    private var becomingBackupError: String? {
        do {
            _ = try configuration.backup()
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// Asks the loop for a planned switchover and waits for its outcome (the control thread).
    public func requestSwitchover(timeout: Duration = .seconds(60)) -> ControlReply {
        let request = SwitchoverRequest()
        let refused: String? = state.withLock {
            guard $0.phase == .protecting else { return "the VM is \($0.phase.rawValue), not protecting: a switchover needs a backup in sync" }
            if let error = becomingBackupError { return "this node could not become the backup: \(error)" }
            guard $0.switchover == nil else { return "a switchover is already under way" }
            $0.switchover = request
            return nil
        }
        if let refused { return ControlReply(ok: false, message: refused) }
        poke()
        request.done.lock()
        defer { request.done.unlock() }
        let deadline = Date(timeIntervalSinceNow: timeout.seconds)
        while request.reply == nil, request.done.wait(until: deadline) {}
        return request.reply ?? ControlReply(ok: false, message: "no outcome within \(timeout); see the agent's log")
    }

    /// The final checkpoint with the guest paused, acknowledged, then GOODBYE(switchover): the
    /// backup activates from exactly the state the guest stopped in, and nothing it sent is lost
    /// (all output was released by that last acknowledgement). On failure the guest resumes here.
    private func handOver(_ replicator: PrimaryReplicator, _ request: SwitchoverRequest) -> Outcome? {
        set(.switchingOver, "final checkpoint")
        logger.notice("switchover: final checkpoint with the guest paused")
        do {
            try replicator.finalCheckpoint(timeout: .seconds(30))
        } catch {
            try? source.resume()
            state.withLock { $0.switchover = nil }
            finish(request, ControlReply(ok: false, message: "switchover failed, the VM keeps running here: \(error)"))
            replicator.abandon()
            state.withLock {
                $0.replicator = nil
                $0.phase = .holding
                $0.lostAt = .now
            }
            return nil
        }
        let epoch = replicator.lastCapturedEpoch
        // The last frames released must reach the LAN before the backup's VM announces itself
        // there, or switches would learn this node's port again for the VM's address.
        if !devices.waitUntilOutputSent(timeout: .seconds(2)) { logger.warning("switchover: released output still queued after 2 s") }
        fence.release()
        replicator.stop(SessionClose(code: .switchover, message: "switchover at checkpoint \(epoch)"))
        set(.switchedOver, "the backup took over at checkpoint \(epoch)")
        logger.notice("switchover: the backup takes over", metadata: ["epoch": "\(epoch)"])
        finish(request, ControlReply(ok: true, message: "switched over at checkpoint \(epoch): the peer is now the primary"))
        return .switchedOver
    }

    private func finish(_ request: SwitchoverRequest, _ reply: ControlReply) {
        request.done.lock()
        request.reply = reply
        request.done.broadcast()
        request.done.unlock()
    }

    /// Releases output of acknowledged checkpoints, while this node is the active copy.
    private func release(through epoch: UInt64) {
        guard fence.isValid else {
            let first = state.withLock { s in
                defer { s.withheldRelease = epoch }
                return s.withheldRelease == nil
            }
            if first { logger.error("output withheld: this node cannot prove it is the active copy (witness lease not valid)") }
            return
        }
        state.withLock { $0.withheldRelease = nil }
        devices.release(through: epoch)
    }

    /// After the grace period without a backup: the availability policy lets output pass.
    private func applyPolicyIfDue() {
        let due: Bool = state.withLock {
            guard $0.phase == .holding, let lostAt = $0.lostAt else { return false }
            return ContinuousClock.now - lostAt >= configuration.failover.grace
        }
        guard due else { return }
        switch configuration.failover.policy {
        case .availability:
            guard (try? fence.tryAcquire()) == true, fence.isValid else {
                set(.holding, "backup lost; output held: the witness lease is not held (\(fence.holder.map { "held by \($0)" } ?? "unreachable"))")
                return
            }
            devices.setOutputMode(.unprotected)
            set(.unprotected, "backup lost: running unprotected (policy availability)")
            logger.warning("grace period over: the VM runs unprotected, output passes (policy availability)")
        case .safety:
            set(.holding, "backup lost: output held until a backup acknowledges a checkpoint (policy safety)")
            logger.warning("grace period over: output stays held until a backup is back (policy safety)")
        }
    }

    private func checkEnd() -> Outcome? {
        if stop.isSet {
            set(.stopped, stop.why)
            return .stopped
        }
        if let holder = state.withLock({ $0.fencedBy }) {
            let reason = state.withLock { $0.fenceLost } ?? "witness lease lost"
            set(.fenced, "\(holder) is the active copy: \(reason)")
            return .fenced("\(holder) is the active copy (\(reason))")
        }
        return nil
    }

    /// After a loss of the fence: gets it back if nobody else took it (the witness was only out
    /// of reach), then lets out what waited; or learns that another node holds it (fenced).
    private func regainFence() {
        guard state.withLock({ $0.fenceLost != nil && $0.fencedBy == nil }) else { return }
        do {
            if try fence.tryAcquire() {
                let (phase, withheld) = state.withLock { s in
                    defer {
                        s.fenceLost = nil
                        s.withheldRelease = nil
                    }
                    return (s.phase, s.withheldRelease)
                }
                logger.notice("witness lease held again: output may leave")
                if phase == .unprotected || asynchronous { devices.setOutputMode(.unprotected) }
                if let withheld { devices.release(through: withheld) }
            } else if let holder = fence.holder {
                state.withLock { $0.fencedBy = holder }
                poke()
            }
        } catch {
            // Still out of reach: output keeps waiting.
        }
    }

    private func set(_ phase: Phase, _ detail: String?) {
        state.withLock {
            $0.phase = phase
            $0.detail = detail
        }
    }

    /// Waits for the next connection attempt, or less when something needs the loop.
    private func waitForRetry() {
        let grace = state.withLock { $0.lostAt.map { configuration.failover.grace - (ContinuousClock.now - $0) } }
        var wait = configuration.failover.reconnect
        if let grace, grace > .zero { wait = min(wait, grace) }
        wake.lock()
        _ = wake.wait(until: Date(timeIntervalSinceNow: wait.seconds))
        wake.unlock()
    }

    private func poke() {
        wake.lock()
        wake.broadcast()
        wake.unlock()
    }

    /// The node's status while this VM runs here.
    public func status(vm: String) -> AgentStatus {
        let (phase, detail, replicator, sessions) = state.withLock { ($0.phase, $0.detail, $0.replicator, $0.sessions) }
        var status: AgentStatus
        if let replicator {
            status = AgentStatus.primary(vm: vm, state: phase.rawValue, detail: detail, statistics: replicator.statistics,
                                         dirtyTracking: "\(source.trackingMethod)")
        } else {
            status = AgentStatus(role: "primary", vm: vm, state: phase.rawValue)
            status.detail = detail
            status.dirtyTracking = "\(source.trackingMethod)"
        }
        status.sessions = sessions
        status.fence = fence.kind
        if primaryConfiguration != nil {
            status.protectionMode = configuration.replication.mode.rawValue
            if asynchronous { status.recoveryPointObjectiveMilliseconds = configuration.replication.recoveryPointObjective.seconds * 1000 }
            status.catchUpJournalBytes = backlog?.journalBytes
        }
        status.activatedFromEpoch = activatedFromEpoch
        status.add(devices: devices)
        return status
    }
}
