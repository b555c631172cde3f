import Foundation
import Logging
import Synchronization
import UnderstudyNetwork
import UnderstudyQEMU
import UnderstudyReplica
import UnderstudySystem
import UnderstudyTransport
import UnderstudyWitness

/// One node of an HA pair, through all its roles in one process: a primary boots the VM and
/// protects it; a backup keeps the replica and takes over; after a switchover the old primary
/// becomes the backup, after a failover the activated VM is protected again as soon as a backup
/// comes (re-protection), and a primary fenced by the witness stops its VM and becomes a backup.
public final class PairNode: @unchecked Sendable {
    /// The role the process starts in.
    public enum Start: Sendable, Equatable {
        /// Boot the VM here and protect it; refuse when another node is the active copy.
        case primary
        /// Boot the VM here, unless another node is the active copy (it holds the witness
        /// lease): then be its backup.
        case primaryUnlessActiveElsewhere
        /// Keep the replica; take over when the primary is lost or hands over.
        case backup
        /// Start the VM from the replica now (the operator's offline activation), then protect it.
        case activate
    }

    private enum Role {
        case primary(VMProtector)
        case backup(BackupSupervisor)
        case idle
    }

    private let configuration: AgentConfiguration
    private let logger: Logger
    private let stop: StopSignal
    private let fence: ActiveCopyFence
    /// `fence` when it checks the VM's spare claim (`[fleet]`); nil: it does not.
    private let claimFence: ClaimCheckedFence?
    private let role = Mutex<Role>(.idle)
    /// The backup a spare claim assigned (`follow`); nil: `peer.*` of the configuration.
    private let followed = Mutex<FleetPeerRecord.Peer?>(nil)
    private let history = Mutex<[String]>([])
    /// Where the role is kept across restarts (`understudy run`); nil: not kept.
    private let record: RoleRecord?
    /// Nil when the configuration has no `[metrics]` table.
    private let metrics: AgentMetrics?
    private let metricsServer = Mutex<MetricsServer?>(nil)
    /// The gate policy of every gate this node starts; a reload sets it (`ConfigurationReloader`).
    public let policy: GatePolicyControl

    /// - Throws: `WitnessError.record` when the node's witness term record is unreadable.
    public init(configuration: AgentConfiguration, record: RoleRecord? = nil, logger: Logger, stop: StopSignal) throws {
        self.configuration = configuration
        self.record = record
        self.logger = logger
        self.stop = stop
        policy = GatePolicyControl(configuration.policy)
        metrics = configuration.metricsListen.map { _ in AgentMetrics(vm: configuration.vm.id) }
        let losses = CallbackRelay<String>()
        let witnessed = try makeFence(configuration, logger: logger) { reason in losses.forward(reason) }
        if let fleet = configuration.fleet {
            let registry = FleetRegistry(endpoints: fleet.endpoints, tls: fleet.tls, timeout: fleet.requestTimeout)
            let checked = ClaimCheckedFence(base: witnessed, node: configuration.nodeName, peer: configuration.peerName,
                                            claim: { [vm = configuration.vm.id] in try registry.claim(on: vm) })
            claimFence = checked
            fence = checked
        } else {
            claimFence = nil
            fence = witnessed
        }
        losses.point { [weak self] reason in self?.fenceLost(reason) }
        metrics?.onScrape { [weak self] metrics in self?.refresh(metrics) }
    }

    /// Where the metrics endpoint listens while `run` runs (nil: none configured, or not yet started).
    public var metricsEndpoint: Endpoint? { metricsServer.withLock { $0?.endpoint } }

    /// Before a scrape: the witness term, and the output gate's held and dropped frames, read from the gate itself.
    private func refresh(_ metrics: AgentMetrics) {
        metrics.witnessTerm(fence.term?.number)
        guard case .primary(let protector) = role.withLock({ $0 }), let gate = protector.devices.gates.first,
              let statistics = protector.devices.outputStatistics, let policy = protector.devices.policyStatistics else {
            metrics.output(gate: nil, heldFrames: 0, heldBytes: 0, droppedFrames: 0)
            return
        }
        // All NICs' gates together; the first one's identity stands for the set (they come and go together).
        let buffer = statistics.buffer
        metrics.output(gate: ObjectIdentifier(gate), heldFrames: UInt64(buffer.heldFrames), heldBytes: UInt64(buffer.heldBytes),
                       droppedFrames: UInt64(buffer.droppedFrames))
        metrics.gatePolicy(gate: ObjectIdentifier(gate), policy)
    }

    private func setRole(_ new: Role) {
        role.withLock { $0 = new }
        switch new {
        case .primary: metrics?.setRole(.primary)
        case .backup: metrics?.setRole(.backup)
        case .idle: metrics?.setRole(.starting)
        }
    }

    /// Protects the VM to `peer` from now on, whenever it runs here: a spare claimed it in place of
    /// the lost backup (the caller keeps the choice across restarts, `FleetPeerRecord`).
    public func follow(_ peer: FleetPeerRecord.Peer) {
        followed.withLock { $0 = peer }
        claimFence?.follow(peer.name)
        if case .primary(let protector) = role.withLock({ $0 }) { protector.protect(to: peer) }
    }

    /// What the node is now, for its VM's spare claim (`FleetClaimWatcher`).
    public var claimSide: FleetClaimStateMachine.Side {
        switch role.withLock({ $0 }) {
        case .primary: .primary
        case .backup(let supervisor): .backup(sessionConnected: supervisor.receiver.isServingPrimary)
        case .idle: .neither
        }
    }

    /// The witness lease could not be renewed: a VM running here stops releasing output at once.
    private func fenceLost(_ reason: String) {
        logger.error("witness lease lost", metadata: ["reason": "\(reason)"])
        if case .primary(let protector) = role.withLock({ $0 }) { protector.fenceLost(reason) }
    }

    /// The control socket's commands: `switchover` (on the active copy), `failover` (on the backup, forced),
    /// `snapshot DIRECTORY` (on the backup: a copy of the replica for `understudy drill`), `snapshot-disk
    /// DIRECTORY` (the same without memory, for `understudy inspect`).
    public var commands: [String: ControlServer.Command] {
        [
            "switchover": { [self] _ in
                guard case .primary(let protector) = role.withLock({ $0 }) else {
                    return ControlServer.encode(ControlReply(ok: false, message: "this node is not running the VM; run switchover on the primary"))
                }
                return ControlServer.encode(protector.requestSwitchover())
            },
            "failover": { [self] _ in
                guard case .backup(let supervisor) = role.withLock({ $0 }) else {
                    return ControlServer.encode(ControlReply(ok: false, message: "this node is not a backup: the VM already runs here, or is starting"))
                }
                return ControlServer.encode(supervisor.forceFailover())
            },
            "snapshot": { [self] directory in
                guard case .backup(let supervisor) = role.withLock({ $0 }) else {
                    return ControlServer.encode(ControlReply(ok: false, message: "this node is not a backup: it has no replica to copy"))
                }
                return supervisor.receiver.snapshotCommand(logger: logger)(directory)
            },
            "snapshot-disk": { [self] directory in
                guard case .backup(let supervisor) = role.withLock({ $0 }) else {
                    return ControlServer.encode(ControlReply(ok: false, message: "this node is not a backup: it has no replica to copy"))
                }
                return supervisor.receiver.snapshotCommand(memory: false, logger: logger)(directory)
            },
        ]
    }

    /// What `understudy status` shows for the current role.
    public func status() -> AgentStatus {
        var status: AgentStatus
        switch role.withLock({ $0 }) {
        case .primary(let protector): status = protector.status(vm: configuration.vm.id)
        case .backup(let supervisor): status = supervisor.status(vm: configuration.vm.id)
        case .idle: status = .starting(StartingStatus(vm: configuration.vm.id, state: stop.reason.map { "\($0)" } ?? "starting"))
        }
        if let last = history.withLock({ $0.last }) { status.detail = [status.detail, last].compactMap { $0 }.joined(separator: "; ") }
        return status
    }

    /// Runs the node until it is stopped (SIGINT/SIGTERM or a fatal error); role changes happen inside.
    /// - Throws: `MetricsServerError` at once when `metrics.listen` cannot be listened on.
    public func run(startingAs start: Start) throws {
        if let metrics, let address = configuration.metricsListen {
            let server = try MetricsServer(listen: address, metrics: metrics)
            metricsServer.withLock { $0 = server }
            logger.notice("metrics served", metadata: ["url": "http://\(server.endpoint)/metrics"])
        }
        defer { metricsServer.withLock { $0.take() }?.close() }
        var next: Start = start
        while !stop.isSet {
            switch next {
            case .primary:
                // The operator's word (`understudy primary`, `--start-as primary`) that the VM runs nowhere else.
                try acquireFenceToStart(.takeOver)
                next = try runPrimary(booting: nil)
            case .primaryUnlessActiveElsewhere:
                do {
                    // This node's disk is the VM's newest state only if nobody claimed the VM since its last term.
                    try acquireFenceToStart(.resume)
                } catch let error as AgentError {
                    note("started as the backup: \(error)")
                    logger.notice("another node is the active copy: starting as its backup", metadata: ["reason": "\(error)"])
                    try demote(replica: nil, because: "\(error)")
                    next = .backup
                    continue
                }
                next = try runPrimary(booting: nil)
            case .activate:
                try acquireFenceToStart(.takeOver)
                let store = try ReplicaStore(directory: try configuration.backup().replicaDirectory, identity: configuration.identity,
                                             diskPaths: configuration.vm.replicatedImages)
                next = try runPrimary(booting: store)
            case .backup:
                if let reason = try record?.load()?.replicaResetReason { try demote(replica: nil, because: reason) }
                let supervisor = try BackupSupervisor(configuration: configuration, fence: fence, logger: logger, stop: stop, metrics: metrics)
                let standby = startStandby(supervisor.receiver.store)
                remember(.backup)
                setRole(.backup(supervisor))
                let outcome = supervisor.run()
                setRole(.idle)
                guard case .activate(let reason) = outcome else {
                    standby?.stop()
                    return
                }
                note("activating: \(reason)")
                logger.notice("taking over", metadata: ["reason": "\(reason)"])
                next = try runPrimary(booting: supervisor.receiver.store, standby: standby, replaying: supervisor.receiver.guestInputToReplay(),
                                      decidedAt: .now)
            }
        }
    }

    /// Runs the VM here, booted or activated from `replica`, and protects it until the role ends.
    /// Returns the next role.
    /// - Parameters:
    ///   - replaying: frames the guest received on the old primary that the replica may lack,
    ///     given to it as soon as it runs.
    ///   - decidedAt: when this node decided to take over (for the log: how long it took).
    private func runPrimary(booting replica: ReplicaStore?, standby: StandbyVM? = nil, replaying: [[UInt8]] = [],
                            decidedAt: ContinuousClock.Instant = .now) throws -> Start {
        let preload = Self.preloadLibrary(logger)
        let diskImages = replica?.diskPaths ?? configuration.vm.replicatedImages
        let activated = replica != nil
        let onExit: @Sendable (QEMUError) -> Void = { [stop] error in stop.trigger(.qemuExited(error)) }
        let waiting = standby?.take(onExit: onExit)
        let devices = try standby?.devices
            ?? GuestDevices(vm: configuration.vm, diskImages: diskImages, nics: configuration.nics,
                            outputBufferBytes: configuration.outputBufferBytes,
                            role: activated || configuration.replication.mode == .asynchronous
                                ? .unprotected : .protected(buffering: !configuration.unsafeNoOutputBuffering),
                            fence: fence, policy: policy, logger: logger)
        defer { devices.stop() }
        if standby != nil, waiting == nil {
            // Its devices stay; QEMU attaches to them anew.
            logger.warning("the standby QEMU is gone: starting one now")
        }
        let boundary: QEMUCheckpointSource.EpochBoundary = { epoch, checkpoint in devices.seal(epoch: epoch, into: checkpoint) }
        let beforeStop: @Sendable () -> Void = { devices.synchronizeDiskBeforeStop() }
        let source: QEMUCheckpointSource
        let firstEpoch: UInt64
        if activated {
            // This node holds the fence: the switches may send the VM's traffic here now. What
            // arrives while QEMU loads waits in QEMU for the guest, so a client's retransmission
            // sent meanwhile is answered the moment the guest runs instead of at its next one
            // (hundreds of milliseconds later: TCP backs off).
            devices.announce()
        }
        if let replica {
            let activation = try Activator.activate(store: replica, description: configuration.vm, preloadLibrary: preload,
                                                    tracking: configuration.dirtyTracking, extraArguments: devices.qemuArguments,
                                                    standby: waiting, boundary: boundary, beforeStop: beforeStop, logger: logger,
                                                    onExit: onExit)
            source = activation.source
            firstEpoch = activation.epoch + 1
            print(String(format: "VM %@ running from checkpoint %llu (activated in %.0f ms, %.0f ms after the decision to take over)",
                         configuration.vm.id, activation.epoch, activation.duration.seconds * 1000, (ContinuousClock.now - decidedAt).seconds * 1000))
            fflush(nil)
            if !replaying.isEmpty {
                // A client's request that reached the old primary's guest after this checkpoint is
                // answered now, not at the client's next retransmission.
                let given = devices.gates.first?.deliverToGuest(replaying) ?? 0
                logger.notice("replayed the guest's input the checkpoint may lack", metadata: ["frames": "\(given)", "of": "\(replaying.count)"])
            }
        } else {
            source = try QEMUCheckpointSource(description: configuration.vm, preloadLibrary: preload, tracking: configuration.dirtyTracking,
                                              extraArguments: devices.qemuArguments, boundary: boundary, beforeStop: beforeStop,
                                              logger: logger, onExit: onExit)
            firstEpoch = 1
        }
        defer { source.shutdown() }
        let protector = try VMProtector(configuration: configuration, source: source, devices: devices, fence: fence,
                                        firstEpoch: firstEpoch, unprotected: activated, logger: logger, stop: stop,
                                        metrics: metrics)
        if let peer = followed.withLock({ $0 }) { protector.protect(to: peer) }
        remember(.primary)
        setRole(.primary(protector))
        defer { setRole(.idle) }
        let outcome = protector.run()
        switch outcome {
        case .stopped:
            fence.release()
            // The VM stops with this process (QEMU is shut down on return): it runs nowhere.
            remember(.primaryStopped)
            return .primary
        case .switchedOver:
            note("switched over: the peer runs the VM, this node is its backup")
            // Recorded now: the node may be stopping (SIGTERM's handover) and never start the backup role.
            try demote(replica: replica, because: "this node ran the VM until it switched over: the peer's history continues from there")
            return .backup
        case .fenced(let reason):
            // The other copy is active: this one stops before anything else can leave it.
            source.qemu.stop()
            note("fenced: \(reason)")
            logger.critical("fenced: this copy of the VM stops; the node continues as the backup", metadata: ["reason": "\(reason)"])
            try demote(replica: replica, because: "fenced: \(reason)")
            return .backup
        }
    }

    /// This node leaves the VM to another copy (or is refused it): whatever its replica directory
    /// holds predates the history that copy continues (a replica kept from before this node booted
    /// the VM, or from before the other copy's term), so it is reset, durably, before the role
    /// record says backup; a crash in between leaves the record as it was, and the next start
    /// resets again. Only a full sync from the current primary makes it activatable again.
    /// Status shows the reason (`replicaReset`) while it lasts. A node configured without
    /// `backup.replica_dir` (`understudy primary`) keeps no replica.
    /// - Parameter replica: the store this process already holds open for the directory, if any.
    private func demote(replica: ReplicaStore?, because reason: String) throws {
        let directory = replica?.directory ?? configuration.replicaDirectory
        if let directory {
            let store = try replica ?? ReplicaStore(directory: directory, identity: configuration.identity, diskPaths: configuration.vm.replicatedImages)
            try store.reset(because: reason)
            logger.warning("replica reset: it cannot be activated until a full sync from the current primary has committed",
                           metadata: ["reason": "\(reason)", "replica": "\(directory)"])
        }
        remember(.backup)
    }

    private static func preloadLibrary(_ logger: Logger) -> String? {
        let preload = PreloadLibrary.locate()
        if preload == nil { logger.warning("\(PreloadLibrary.fileName) not found: dirty tracking falls back to page comparison") }
        return preload
    }

    /// The backup's QEMU, waiting to be activated; nil (a cold start later) when it cannot start,
    /// and for a UEFI VM: QEMU reads the firmware's flash into memory once, when it starts (before
    /// the replica's variable store is synchronised, and the guest may set variables at any
    /// time), the device state does not carry it, and after loading the device state QEMU writes
    /// that stale copy back over the replicated store. A QEMU started for the activation reads
    /// the committed store.
    private func startStandby(_ store: ReplicaStore) -> StandbyVM? {
        if case .uefi = configuration.vm.firmware {
            logger.info("no standby QEMU for a UEFI VM: activation starts QEMU on the committed variable store")
            return nil
        }
        do {
            return try StandbyVM(configuration: configuration, store: store, fence: fence, policy: policy, preloadLibrary: Self.preloadLibrary(logger),
                                 logger: logger)
        } catch {
            logger.warning("no standby QEMU: activation will start one", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// A node that is to run the VM first makes sure no other copy is active.
    private func acquireFenceToStart(_ intent: ClaimIntent) throws {
        let deadline = ContinuousClock.now + configuration.witnessLeaseTTL * 2
        while true {
            if try fence.tryAcquire(intent) { return }
            if let supersession = fence.supersession { throw AgentError.fenced(supersession) }
            guard ContinuousClock.now < deadline, !stop.isSet else {
                throw AgentError.fenced("\(fence.holder ?? "another node") is the active copy of \(configuration.vm.id) (it holds the witness lease): "
                                        + "refusing to run a second copy")
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
    }

    /// An orderly stop (SIGTERM/SIGINT to the daemon). A node running the VM first hands
    /// it to an in-sync backup when `action` is `.switchover`, so that the VM runs on with
    /// nothing lost; then everything stops. Blocks until the handover is done or refused.
    public func shutDown(_ action: StopAction) {
        if action == .switchover, case .primary(let protector) = role.withLock({ $0 }), protector.phase == .protecting {
            logger.notice("stopping: handing the VM over to the backup first")
            let reply = protector.requestSwitchover()
            if reply.ok {
                logger.notice("stopping: the backup runs the VM now", metadata: ["switchover": "\(reply.message)"])
            } else {
                logger.error("stopping: the switchover failed, the VM stops here", metadata: ["reason": "\(reply.message)"])
            }
        }
        stop.trigger(.requested(nil))
    }

    /// Keeps the role across restarts; a failure is logged (the next start may then choose from
    /// an older entry, which `StartingRole` resolves towards the backup).
    private func remember(_ entry: RoleRecord.Entry) {
        guard let record else { return }
        do {
            try record.store(entry)
        } catch {
            logger.error("cannot record this node's role", metadata: ["role": "\(entry.rawValue)", "error": "\(error)"])
        }
    }

    private func note(_ event: String) {
        history.withLock { $0.append(event) }
    }
}
