import Foundation
import Logging
import Synchronization
import UnderstudyProtocol
import UnderstudyReplica
import UnderstudySystem
import UnderstudyTransport
import UnderstudyWitness

/// The backup role: receives checkpoints (`BackupReceiver`) and decides when this node takes
/// over. It listens for the primary on every heartbeat path, and activates when the primary is
/// lost (with automatic failover), hands the VM over (switchover), or the operator forces it —
/// each time only once the fence lets this node be the active copy.
public final class BackupSupervisor: @unchecked Sendable {
    /// How `run` ended.
    public enum Outcome: Sendable, Equatable {
        case stopped
        /// Activate the VM from the replica now: this node holds the fence, the receiver is stopped.
        case activate(reason: String)
    }

    public let receiver: BackupReceiver
    private let configuration: AgentConfiguration
    private let fence: ActiveCopyFence
    private let logger: Logger
    private let stop: StopSignal
    private let shared: Shared
    private var datagrams: HeartbeatDatagrams?
    /// Only `run`'s thread attempts the fence.
    private var lastFenceAttempt: ContinuousClock.Instant?
    private let metrics: AgentMetrics?
    /// The scheduled inspections and drills while `run` runs; nil: none scheduled.
    private let scheduler = Mutex<BackupScheduler?>(nil)

    /// What the receiver's and the datagram path's threads report into.
    private final class Shared: Sendable {
        let monitor: Mutex<HeartbeatMonitor>
        let requests = Mutex(Requests())
        /// The datagram path, once opened: each new session's key goes to it.
        let datagrams = Mutex<HeartbeatDatagrams?>(nil)
        init(_ monitor: HeartbeatMonitor) { self.monitor = Mutex(monitor) }
    }

    private struct Requests {
        var handover = false
        var forced: ControlRequest?
    }

    /// - Parameter metrics: where the receiver records commits; nil: nowhere.
    public init(configuration: AgentConfiguration, fence: ActiveCopyFence, logger: Logger, stop: StopSignal,
                metrics: AgentMetrics? = nil) throws {
        self.configuration = configuration
        self.fence = fence
        self.logger = logger
        self.stop = stop
        self.metrics = metrics
        let shared = Shared(HeartbeatMonitor(configuration: configuration.heartbeat, now: .now))
        self.shared = shared
        var backup = try configuration.backup()
        backup.heartbeatInterval = configuration.heartbeat.interval
        backup.metrics = metrics
        receiver = try BackupReceiver(configuration: backup, logger: logger) { event in
            let now = ContinuousClock.now
            switch event {
            case .heard: shared.monitor.withLock { _ = $0.heard(on: .replication, at: now) }
            case .sessionStarted(let key):
                shared.monitor.withLock { $0.restart(at: now) }
                shared.datagrams.withLock { $0 }?.use(key: key)
            case .handover: shared.requests.withLock { $0.handover = true }
            }
        }
        if let path = configuration.heartbeatDatagrams {
            datagrams = try HeartbeatDatagrams(listen: path.listen, peerAddress: path.peer, vm: configuration.vm.id,
                                               node: configuration.nodeName, peerName: configuration.peerName) {
                let now = ContinuousClock.now
                shared.monitor.withLock { _ = $0.heard(on: .datagram, at: now) }
            }
            shared.datagrams.withLock { [datagrams] in $0 = datagrams }
        }
    }

    /// Serves until stopped or until this node must activate. Call on a dedicated thread.
    public func run() -> Outcome {
        let server = JoinableThread(name: "backup-accept") { [receiver] in receiver.serve() }
        let done = Latch()
        // Its own thread, under real-time scheduling: this loop may wait for the witness.
        let beating = datagrams.map { datagrams in
            JoinableThread(name: "heartbeat-udp-send") { [interval = configuration.heartbeat.interval] in
                RealtimePriority.raiseCurrentThread()
                repeat { datagrams.send() } while !done.wait(timeout: interval)
            }
        }
        scheduler.withLock { [self] in $0 = BackupScheduler(configuration: configuration, receiver: receiver, metrics: metrics, logger: logger) }
        logger.notice("backup serving", metadata: ["vm": "\(configuration.vm.id)", "listen": "\(receiver.endpoint)",
                                                   "automatic-failover": "\(configuration.automaticFailover)", "fence": "\(fence.kind)"])
        defer {
            // Before the receiver stops: a scan's or a drill's snapshot asks it to pause applying.
            scheduler.withLock { $0.take() }?.close()
            done.trigger()
            beating?.join()
            receiver.stop()
            server.join()
            receiver.waitUntilIdle()
            datagrams?.close()
        }
        var reportedLoss = false
        var reportedRefusal = false
        let poll = max(configuration.heartbeat.interval / 4, .milliseconds(2))
        while !stop.wait(timeout: poll) {
            let now = ContinuousClock.now
            _ = shared.monitor.withLock { $0.poll(now: now) }
            let requested = shared.requests.withLock { ($0.handover, $0.forced) }
            if requested.0 {
                // The primary released the witness before its GOODBYE: the lease is ours to take.
                if acquireFence() { return .activate(reason: "switchover: the primary handed the VM over") }
                continue
            }
            if let forced = requested.1 {
                shared.requests.withLock { $0.forced = nil }
                if acquireFence(throttled: false) {
                    forced.finish(ControlReply(ok: true, message: "activating from checkpoint \(receiver.store.state.committedEpoch)"))
                    return .activate(reason: "failover forced by the operator")
                }
                forced.finish(ControlReply(ok: false, message: "refused: \(fence.holder ?? "another node") holds the witness lease; "
                                           + "it is the active copy (stop it, or wait for its lease to expire)"))
                continue
            }
            let lost = shared.monitor.withLock { $0.isLost }
            let refusal = receiver.store.state.activationRefusal
            if lost, let refusal, !reportedRefusal {
                // Once per loss: a reset replica (a demoted node's) says which term left it behind.
                reportedRefusal = true
                logger.error("primary lost, and this node cannot take over", metadata: ["reason": "\(refusal)"])
            }
            guard lost, refusal == nil else {
                reportedLoss = false
                if !lost { reportedRefusal = false }
                continue
            }
            let silence = shared.monitor.withLock { $0.silence(at: now) }
            if !reportedLoss {
                reportedLoss = true
                logger.error("primary lost", metadata: ["silent-ms": "\(silence.wholeMilliseconds)",
                                                        "committed-epoch": "\(receiver.store.state.committedEpoch)"])
                if !configuration.automaticFailover {
                    logger.error("""
                        automatic failover is off (no witness and failover.without_witness is false, or failover.automatic = false): \
                        run `understudy failover --force` on this node once the primary is surely down
                        """)
                }
            }
            guard configuration.automaticFailover else { continue }
            if acquireFence() { return .activate(reason: "primary lost: nothing heard for \(silence.wholeMilliseconds) ms") }
        }
        return .stopped
    }

    /// `understudy failover --force`: activate now, if the fence allows it (the control thread).
    public func forceFailover() -> ControlReply {
        if let refusal = receiver.store.state.activationRefusal { return ControlReply(ok: false, message: refusal) }
        let request = ControlRequest()
        shared.requests.withLock { $0.forced = request }
        return request.wait(timeout: .seconds(30)) ?? ControlReply(ok: false, message: "no outcome within 30 s")
    }

    /// - Parameter throttled: at most one attempt per 100 ms (each asks the witness over the network).
    private func acquireFence(throttled: Bool = true) -> Bool {
        let now = ContinuousClock.now
        if throttled, let last = lastFenceAttempt, now - last < .milliseconds(100) { return false }
        lastFenceAttempt = now
        do {
            // The replica is the primary's history: it continues in the next term, whatever the current one.
            return try fence.tryAcquire(.takeOver)
        } catch {
            logger.warning("cannot reach the witness", metadata: ["error": "\(error)"])
            return false
        }
    }

    /// The node's status in the backup role.
    public func status(vm: String) -> AgentStatus {
        var status = BackupStatus(vm: vm, state: .serving, statistics: receiver.statistics)
        let now = ContinuousClock.now
        status.peerSilentMilliseconds = shared.monitor.withLock { $0.silence(at: now) }.seconds * 1000
        status.heartbeatTimeoutMilliseconds = configuration.heartbeat.timeout.seconds * 1000
        status.fence = fence.kind
        status.witnessTerm = fence.term?.number
        status.replicaReset = receiver.store.state.resetReason
        let scheduled = scheduler.withLock { $0 }
        status.inspection = scheduled?.inspection
        if let drills = scheduled?.drills {
            status.drills = drills.status
            status.lastDrill = drills.last
            status.problems = drills.problems.isEmpty ? nil : drills.problems
        }
        return .backup(status)
    }
}
