import Foundation
import Logging
import Synchronization
import UnderstudyProtocol
import UnderstudyQEMU
import UnderstudySystem
import UnderstudyTransport
import UnderstudyWitness

/// Keeps a running VM protected whenever its backup can be reached: connects, synchronises,
/// checkpoints; when the backup is lost, holds the output of unacknowledged checkpoints for the
/// grace period, then follows the policy (continue unprotected, or keep holding), and keeps
/// trying to protect the VM again with a full resynchronisation (re-protection). The same loop
/// runs on a primary that booted the VM and on a backup that activated it.
///
/// Output leaves only on an acknowledgement, or unprotected after the grace period, and in both
/// cases only while this node is the active copy (`ActiveCopyFence.isValid`). The rules are
/// `ProtectionStateMachine`'s; this class carries out what it decides.
public final class VMProtector: @unchecked Sendable {
    public typealias Phase = ProtectionStateMachine.Phase
    /// How `run` ended.
    public typealias Outcome = ProtectionStateMachine.Outcome

    public let source: QEMUCheckpointSource
    public let devices: GuestDevices
    let configuration: AgentConfiguration
    /// Nil when the configuration names no peer to protect to (peer.address).
    let primaryConfiguration: PrimaryConfiguration?
    let fence: ActiveCopyFence
    let logger: Logger
    private let stop: StopSignal
    let state: Mutex<Shared>
    /// The checkpoint this VM was activated from (nil: booted here).
    let activatedFromEpoch: UInt64?
    private let wake = NSCondition()
    /// Unacknowledged checkpoints and disk writes kept across sessions for catch-up; nil: none kept.
    let backlog: ReplicationBacklog?
    private let metrics: AgentMetrics?
    /// The first checkpoint's number (after the epoch an activated VM started from).
    private let firstEpoch: UInt64
    /// The backup a spare claim put in place of the configured one (`protect(to:)`); nil: the configuration's.
    let followed = Mutex<FleetPeerRecord.Peer?>(nil)
    /// The datagram heartbeat path while `run` runs, pointed at the current peer before each
    /// session; each session's key goes to it. Sent under its lock: a retarget closes the socket.
    let datagrams = Mutex(DatagramPath())

    struct DatagramPath {
        /// What `chooseDatagramPath` chose last; nil: nothing yet.
        var choice: HeartbeatDatagramTarget.Choice?
        var socket: HeartbeatDatagrams?
    }

    /// What the loop, control, fence-watch and acknowledging threads share.
    struct Shared {
        var machine: ProtectionStateMachine
        var replicator: PrimaryReplicator?
        var switchover: ControlRequest?
    }

    /// - Parameters:
    ///   - firstEpoch: the next checkpoint number (after the epoch an activated VM started from).
    ///   - unprotected: the VM already runs without a backup and its output passes (activation).
    ///   - metrics: where every session records its checkpoints; nil: nowhere.
    public init(configuration: AgentConfiguration, source: QEMUCheckpointSource, devices: GuestDevices, fence: ActiveCopyFence,
                firstEpoch: UInt64, unprotected: Bool, logger: Logger, stop: StopSignal, metrics: AgentMetrics? = nil) throws {
        self.configuration = configuration
        if configuration.peerAddress != nil {
            let replication = configuration.replication
            backlog = replication.catchUpJournalLimit > 0
                ? ReplicationBacklog(memorySize: Int(source.identity.memorySize), journalPath: replication.catchUpJournal,
                                     journalLimit: replication.catchUpJournalLimit)
                : nil
            primaryConfiguration = try Self.primaryConfiguration(configuration, devices: devices, firstEpoch: firstEpoch, metrics: metrics, backlog: backlog)
        } else {
            primaryConfiguration = nil
            backlog = nil
        }
        self.metrics = metrics
        self.firstEpoch = firstEpoch
        self.source = source
        self.devices = devices
        self.fence = fence
        self.logger = logger
        self.stop = stop
        state = Mutex(Shared(machine: ProtectionStateMachine(failover: configuration.failover,
                                                             asynchronous: configuration.replication.mode == .asynchronous,
                                                             unprotected: unprotected, now: .now)))
        activatedFromEpoch = unprotected ? firstEpoch - 1 : nil
    }

    /// A session's settings for `configuration` (its `peer.address` set).
    private static func primaryConfiguration(_ configuration: AgentConfiguration, devices: GuestDevices, firstEpoch: UInt64, metrics: AgentMetrics?,
                                             backlog: ReplicationBacklog?) throws -> PrimaryConfiguration {
        var primary = try configuration.primary()
        primary.heartbeat = configuration.heartbeat
        primary.metrics = metrics
        primary.firstEpoch = firstEpoch
        primary.outputWaiting = devices.outputWaiting
        // A reconnection attempt must not stall the loop for long: the policy and stop are checked between them.
        primary.connectTimeout = min(primary.connectTimeout, max(configuration.failover.reconnect, .seconds(1)))
        primary.backlog = backlog
        return primary
    }

    /// Protects to `peer` from the next session on: a spare claimed the VM in place of its lost
    /// backup. The spare's replica is empty, so that session synchronises in full; its
    /// certificate must name `peer.name`.
    public func protect(to peer: FleetPeerRecord.Peer) {
        followed.withLock { $0 = peer }
        poke()
    }

    /// The session settings with the followed peer, if any; nil: no peer to protect to.
    private func currentPrimaryConfiguration(firstEpoch: UInt64) -> PrimaryConfiguration? {
        guard let peer = followed.withLock({ $0 }) else { return primaryConfiguration }
        var retargeted = configuration
        retargeted.peerName = peer.name
        do {
            retargeted.peerAddress = try peer.address.map { text throws(TransportError) in try Endpoint(parsing: text) }
            guard retargeted.peerAddress != nil else { return primaryConfiguration }
            return try Self.primaryConfiguration(retargeted, devices: devices, firstEpoch: firstEpoch, metrics: metrics, backlog: backlog)
        } catch {
            logger.error("cannot protect to the spare the fleet assigned", metadata: ["peer": "\(peer.name)", "error": "\(error)"])
            return primaryConfiguration
        }
    }

    public var phase: Phase { state.withLock { $0.machine.phase } }

    /// The current session's counters (nil between sessions).
    public var statistics: PrimaryStatistics? { state.withLock { $0.replicator }?.statistics }

    /// The fence's holder lost the right to be active (witness lease lost): output stops at once.
    public func fenceLost(_ reason: String) {
        devices.setOutputMode(.outputCommit)
        state.withLock { $0.machine.fenceLost(reason) }
        poke()
    }

    /// Runs until stopped, switched over or fenced. Call on a dedicated thread.
    public func run() -> Outcome {
        // The datagram path tells the backup this node lives even while the replication link is down.
        let done = Latch()
        chooseDatagramPath()
        let beating = configuration.heartbeatDatagrams.map { _ in
            JoinableThread(name: "heartbeat-udp-send") { [self, interval = configuration.heartbeat.interval] in
                RealtimePriority.raiseCurrentThread()
                repeat { datagrams.withLock { $0.socket?.send() } } while !done.wait(timeout: interval)
            }
        }
        let fenceWatch = JoinableThread(name: "fence-watch") { [self] in
            while !done.wait(timeout: .milliseconds(100)) { regainFence() }
        }
        defer {
            done.trigger()
            beating?.join()
            fenceWatch.join()
            datagrams.withLock { $0.socket.take() }?.close()
        }
        return protect()
    }

    private func protect() -> Outcome {
        var nextEpoch = firstEpoch
        if currentPrimaryConfiguration(firstEpoch: nextEpoch) == nil {
            state.withLock { $0.machine.noBackupConfigured() }
            // Until a spare claim names a backup (`protect(to:)`), or the end.
            while currentPrimaryConfiguration(firstEpoch: nextEpoch) == nil {
                if let outcome = checkEnd() { return outcome }
                waitForRetry()
            }
        }
        var lastError = ""
        while true {
            if let outcome = checkEnd() { return outcome }
            applyPolicyIfDue()
            keepRecordedDiskWrites()
            guard var sessionConfiguration = currentPrimaryConfiguration(firstEpoch: nextEpoch) else {
                // The followed spare's address does not parse (an error logged): not again at once.
                waitForRetry()
                continue
            }
            chooseDatagramPath()
            sessionConfiguration.firstEpoch = nextEpoch
            let replicator = PrimaryReplicator(source: source, configuration: sessionConfiguration, disk: devices.diskSet, logger: logger,
                                               onRelease: { [weak self] epoch in self?.release(through: epoch) })
            state.withLock { $0.replicator = replicator }
            do {
                try replicator.start(beforeSync: { [self] in
                    if state.withLock({ $0.machine.sessionSyncing() }) { devices.holdOutputFromNextEpoch() }
                }, beforeFullSync: { [devices] in devices.discardRecordedDiskWrites() })
            } catch {
                devices.cancelPendingHold()
                replicator.abandon()
                let text = "\(error)"
                if text != lastError { logger.warning("cannot protect the VM: the backup is not reachable", metadata: ["error": "\(text)"]) }
                lastError = text
                state.withLock {
                    $0.replicator = nil
                    $0.machine.sessionFailed(text)
                }
                waitForRetry()
                continue
            }
            lastError = ""
            if let key = replicator.datagramKey { datagrams.withLock { $0.socket?.use(key: key) } }
            state.withLock { $0.machine.sessionStarted() }
            logger.notice("protecting", metadata: ["vm": "\(configuration.vm.id)", "backup": "\(sessionConfiguration.backup)",
                                                   "first-epoch": "\(nextEpoch)"])
            // Input replay covers the first NIC (GUEST_INPUT carries no NIC); frames the others
            // received after the last checkpoint are lost as on any network, and resent by TCP.
            devices.gates.first?.observeGuestInput(replicator.guestInputForwarder)
            var failure: Error?
            do {
                try replicator.runCheckpoints(shouldStop: { [self] in stop.isSet || state.withLock { $0.machine.checkpointsShouldStop } })
            } catch {
                failure = error
            }
            devices.gates.first?.observeGuestInput(nil)
            nextEpoch = max(replicator.lastCapturedEpoch, nextEpoch - 1) + 1
            guard let failure else {
                switch state.withLock({ $0.machine.sessionEnded() }) {
                case .handOver:
                    if let outcome = handOver(replicator) { return outcome }
                    nextEpoch = replicator.lastCapturedEpoch + 1
                case .close:
                    replicator.stop()
                    state.withLock { $0.replicator = nil }
                }
                continue
            }
            replicator.abandon()
            state.withLock {
                $0.replicator = nil
                $0.machine.backupLost("\(failure)", now: .now)
            }
            if configuration.replication.mode == .asynchronous {
                logger.error("backup lost: the replica falls behind until the link is back (asynchronous mode: output passes)",
                             metadata: ["error": "\(failure)", "catch-up": "\(backlog == nil ? "off" : "on")"])
            } else {
                logger.error("backup lost: output of unacknowledged checkpoints is held", metadata: [
                    "error": "\(failure)", "grace-ms": "\(configuration.failover.grace.wholeMilliseconds)",
                    "policy": "\(configuration.failover.policy)"])
            }
        }
    }

    /// Points the datagram path at the current peer (`HeartbeatDatagramTarget`): the configured
    /// one, or the spare followed since. A change closes the old socket and binds `udp_listen`
    /// anew; a peer with no second path is said once, in the log and in status.
    private func chooseDatagramPath() {
        let choice = HeartbeatDatagramTarget.choose(configured: configuration.heartbeatDatagrams, configuredPeer: configuration.peerName,
                                                    followed: followed.withLock { $0 })
        let previous: HeartbeatDatagrams?? = datagrams.withLock { path in
            guard path.choice != choice else { return .none }
            path.choice = choice
            return .some(path.socket.take())
        }
        guard case .some(let old) = previous else { return }
        old?.close()
        switch choice {
        case .path(let target):
            do {
                let socket = try HeartbeatDatagrams(listen: target.listen, peerAddress: target.peer, vm: configuration.vm.id,
                                                    node: configuration.nodeName, peerName: target.peerName, heard: {})
                datagrams.withLock { $0.socket = socket }
                if target.peerName != configuration.peerName {
                    logger.notice("heartbeat datagrams go to the spare", metadata: ["peer": "\(target.peerName)", "address": "\(target.peer)"])
                }
            } catch {
                logger.error("cannot open the datagram heartbeat path", metadata: ["listen": "\(target.listen)", "error": "\(error)"])
            }
        case .none(let reason?):
            logger.warning("no second heartbeat path with this peer", metadata: ["reason": "\(reason)"])
        case .none(nil):
            break
        }
    }

    /// Between sessions: the disk writes recorded since the last checkpoint go to the catch-up
    /// journal (or are forgotten when no catch-up is possible: the next session copies the disk).
    private func keepRecordedDiskWrites() {
        let changes: [DiskChange]
        do {
            changes = try devices.takeRecordedDiskWrites()
        } catch {
            backlog?.invalidate("\(error)")
            logger.warning("the next connection to the backup resynchronises in full", metadata: ["why": "\(error)"])
            return
        }
        guard let overflow = backlog?.spill(changes) else { return }
        logger.warning("the next connection to the backup resynchronises in full", metadata: ["why": "\(overflow)"])
    }

    /// Releases output of acknowledged checkpoints, while this node is the active copy.
    private func release(through epoch: UInt64) {
        let fenceValid = fence.isValid
        switch state.withLock({ $0.machine.acknowledged(through: epoch, fenceValid: fenceValid) }) {
        case .release(let through):
            devices.release(through: through)
        case .withhold(let first):
            if first { logger.error("output withheld: this node cannot prove it is the active copy (witness lease not valid)") }
        }
    }

    /// After the grace period without a backup: the availability policy lets output pass.
    private func applyPolicyIfDue() {
        switch state.withLock({ $0.machine.graceElapsed(now: .now) }) {
        case .acquireFence?:
            let held = (try? fence.tryAcquire(.resume)) == true && fence.isValid
            let holder = held ? nil : fence.holder
            guard state.withLock({ $0.machine.availabilityFence(held: held, holder: holder) }) else { return }
            devices.setOutputMode(.unprotected)
            logger.warning("grace period over: the VM runs unprotected, output passes (policy availability)")
        case .keepHolding?:
            logger.warning("grace period over: output stays held until a backup is back (policy safety)")
        case nil:
            break
        }
    }

    private func checkEnd() -> Outcome? {
        let stopReason = stop.reason.map { "\($0)" }
        return state.withLock { $0.machine.end(stopReason: stopReason) }
    }

    /// After a loss of the fence: gets it back if nobody else took it (the witness was only out
    /// of reach), then lets out what waited; or learns that another node holds it (fenced).
    private func regainFence() {
        guard state.withLock({ $0.machine.wantsFence }) else { return }
        do {
            if try fence.tryAcquire(.resume) {
                let regained = state.withLock { $0.machine.fenceRegained() }
                logger.notice("witness lease held again: output may leave")
                if regained.outputPasses { devices.setOutputMode(.unprotected) }
                if let withheld = regained.release { devices.release(through: withheld) }
            } else if let supersession = fence.supersession {
                state.withLock { $0.machine.fenceSuperseded(supersession) }
                poke()
            } else if let holder = fence.holder {
                state.withLock { $0.machine.fenceHeld(by: holder) }
                poke()
            }
        } catch {
            // Still out of reach: output keeps waiting.
        }
    }

    /// Waits for the next connection attempt, or less when something needs the loop.
    private func waitForRetry() {
        let wait = state.withLock { $0.machine.reconnectDelay(now: .now) }
        wake.lock()
        _ = wake.wait(until: Date(timeIntervalSinceNow: wait.seconds))
        wake.unlock()
    }

    func poke() {
        wake.lock()
        wake.broadcast()
        wake.unlock()
    }
}
