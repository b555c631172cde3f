import Foundation
import Logging
import Synchronization
import UnderstudyDisk
import UnderstudyProtocol
import UnderstudyQEMU
import UnderstudySystem
import UnderstudyTransport

/// The primary's replication engine: connects to the backup, brings its replica up to date, then
/// checkpoints the source on the calling (dedicated) thread, while a receiver thread takes acks.
/// The session's bookkeeping is the pure `PrimarySession` (in `SessionGuard`); this class carries
/// out what it returns.
public final class PrimaryReplicator: @unchecked Sendable {
    public let configuration: PrimaryConfiguration
    let source: CheckpointSource
    let logger: Logger
    let session: SessionGuard
    private var connection: FrameConnection?
    private(set) var sender: FrameSender?
    /// What the backup's WELCOME agreed (set by `start`).
    private(set) var agreedCapabilities: Capabilities = []
    private var receiver: JoinableThread?
    private var heartbeats: JoinableThread?
    /// Signs of life from the backup, fed by the receiver thread, read by the heartbeat thread.
    let liveness = Mutex<HeartbeatMonitor?>(nil)
    private var encoder: CheckpointEncoder?
    /// The key this session's TLS exported for the datagram heartbeat path; nil before `start` connected.
    public private(set) var datagramKey: [UInt8]?
    /// Called on the receiver thread with each acknowledged epoch; output of epochs up to it may leave.
    let onRelease: @Sendable (UInt64) -> Void
    /// The guest's disk, copied in the initial sync; its later writes come with the checkpoints.
    let disk: DiskSet?

    /// - Parameter disk: the image the guest's disk server writes. Its recorder must have been
    ///   recording since before the guest could write, so that every write the sync's copy may
    ///   miss is in a checkpoint.
    public init(source: CheckpointSource, configuration: PrimaryConfiguration, disk: DiskSet? = nil, logger: Logger,
                onRelease: @escaping @Sendable (UInt64) -> Void = { _ in }) {
        self.source = source
        self.disk = disk
        self.configuration = configuration
        self.logger = logger
        self.onRelease = onRelease
        session = SessionGuard(PrimarySession(identity: source.identity, configuration: configuration, now: .now))
    }

    /// The last epoch this session captured (the next session starts after it), whether or not it was sent.
    public var lastCapturedEpoch: UInt64 { session.withLock { $0.session.lastCapturedEpoch } }

    /// The session's counters as of now, with the interval's choice and asynchronous mode's lag.
    public var statistics: PrimaryStatistics { session.withLock { $0.session.statistics(now: .now) } }

    /// Connects, authenticates, performs the handshake and brings the backup's replica up to
    /// date: with one catch-up checkpoint when the backlog allows it, else a full synchronisation.
    /// - Parameters:
    ///   - beforeSync: runs once the backup has accepted, before the first byte of the guest is
    ///     read: output from here on must wait for this session's acknowledgements.
    ///   - beforeFullSync: runs before a full synchronisation reads the guest's disk: the disk
    ///     writes recorded so far are to be forgotten (the copy includes them).
    public func start(beforeSync: () -> Void = {}, beforeFullSync: () -> Void = {}) throws {
        let context = try TLSContext(role: .client, configuration: configuration.tls)
        let timeout = Int32(configuration.connectTimeout.components.seconds * 1000)
        let stream = try TLSStream.connect(to: configuration.backup, context: context, timeoutMilliseconds: timeout)
        let connection = FrameConnection(stream: stream)
        self.connection = connection
        datagramKey = try stream.exportKeyingMaterial(label: HeartbeatDatagram.exporterLabel, length: HeartbeatDatagram.keyLength)
        logger.info("connected to backup", metadata: ["backup": "\(configuration.backup)", "peer": "\(stream.peerName)"])
        try connection.send(.hello(Hello(identity: source.identity, requiredCapabilities: configuration.requiredCapabilities,
                                          nodeName: configuration.nodeName)))
        let welcome = try connection.receive()
        let capabilities: Capabilities
        let committed: UInt64
        switch session.withLock({ $0.session.received(welcome) }) {
        case .startSync(let agreed, let backupCommitted):
            capabilities = agreed
            committed = backupCommitted
            logger.info("backup accepted the session", metadata: ["capabilities": "\(agreed)", "backup-committed-epoch": "\(committed)"])
        case .peerClosed(let close):
            connection.close()
            throw ProtocolError.rejected(code: close.code, message: close.message)
        case .close(let error):
            try? connection.send(.goodbye(SessionClose(code: error.rejectCode, message: error.description)))
            connection.close()
            throw error
        default:
            connection.close()
            throw ProtocolError.unexpected("handshake ended without WELCOME")
        }
        agreedCapabilities = capabilities
        let encoder = CheckpointEncoder(identity: source.identity, capabilities: capabilities, compression: configuration.compression,
                                        lastSent: configuration.backlog?.lastSent)
        self.encoder = encoder
        let sender = FrameSender(connection: connection, capacity: configuration.sendQueueFrames, name: "primary-send",
                                 bytesPerSecond: configuration.bandwidthLimit)
        self.sender = sender
        let echo = capabilities.contains(.heartbeatEcho)
        receiver = JoinableThread(name: "primary-recv") { [self] in receiveLoop(connection, sender: sender, echoHeartbeats: echo) }
        if let heartbeat = configuration.heartbeat {
            heartbeats = JoinableThread(name: "primary-heartbeat") { [self] in heartbeatLoop(heartbeat, connection: connection, sender: sender) }
        }
        beforeSync()
        let backlog = configuration.backlog
        let plan = session.withLock {
            $0.session.plan(capabilities: capabilities, backupCommitted: committed, askBacklog: backlog.map { backlog in { backlog.catchUp(onto: $0) } })
        }
        switch plan {
        case .catchUp(let plan):
            configuration.metrics?.sessionStarted(catchUp: true)
            logger.notice("catching the backup up with one checkpoint instead of a full resynchronisation", metadata: [
                "replica-epoch": "\(plan.base)", "checkpoints-to-resend": "\(plan.entries.count)",
                "pages-to-resend": "\(plan.resentPages.count)", "journal-bytes": "\(configuration.backlog?.journalBytes ?? 0)"])
            try sender.enqueue(Message.catchUpBegin(baseEpoch: plan.base).frame)
        case .fullSync(let reason):
            configuration.metrics?.sessionStarted(catchUp: false)
            if let reason { logger.notice("full resynchronisation", metadata: ["why": "\(reason)"]) }
            beforeFullSync()
            configuration.backlog?.reset()
            try initialSync(encoder: encoder, sender: sender)
        }
        let (event, decision) = session.withLock { [written = sender.written] in
            let event = $0.session.syncFinished(sender: written, now: .now)
            return (event, $0.session.statistics(now: .now).interval)
        }
        if let event { log(event) }
        if let decision { configuration.metrics?.interval(decision) }
    }

    /// Runs `count` checkpoints (nil: until `stop` or an error). Call on a dedicated thread.
    /// Each starts when the interval passed, or earlier when output waits in the gate
    /// (`CheckpointSchedule`); `shouldStop` is asked between checkpoints and waits.
    public func runCheckpoints(count: Int? = nil, shouldStop: () -> Bool = { false }) throws {
        guard let encoder, let sender else { preconditionFailure("start() first") }
        var done = 0
        while count.map({ done < $0 }) ?? true, !shouldStop() {
            let outputWaiting = configuration.outputWaiting?.isSet ?? false
            let next = session.withLock { $0.session.nextCheckpoint(now: .now, outputWaiting: outputWaiting) }
            switch next {
            case .wait(let deadline, let wakeOnOutput):
                if wakeOnOutput, let flag = configuration.outputWaiting {
                    flag.wait(until: deadline)
                } else {
                    let remaining = deadline - .now
                    if remaining > .zero { Thread.sleep(forTimeInterval: remaining.seconds) }
                }
            case .checkpoint(let reason):
                let start = ContinuousClock.now
                let taken = try checkpoint(resume: true, reason: reason, encoder: encoder, sender: sender)
                done += 1
                let tick = session.withLock { $0.session.tick(taken, started: start, now: .now) }
                if let event = tick.recoveryPoint { log(event) }
                if tick.hold > .zero {
                    try source.hold(for: tick.hold)
                    session.withLock { $0.session.held(tick.hold) }
                }
            }
        }
    }

    func log(_ event: RecoveryPointMonitor.Event) {
        let objective = configuration.recoveryPoint?.objective ?? .zero
        switch event {
        case .exceeded(let lag):
            logger.warning("recovery point objective exceeded: the replica lags the guest", metadata: [
                "lag-ms": "\(lag.wholeMilliseconds)", "objective-ms": "\(objective.wholeMilliseconds)",
                "throttle": "\(configuration.recoveryPoint?.throttleGuest == true ? "on: the guest is slowed" : "off")"])
        case .recovered(let lasted):
            logger.notice("recovery point objective met again", metadata: ["objective-ms": "\(objective.wholeMilliseconds)",
                                                                        "exceeded-for-ms": "\(lasted.wholeMilliseconds)"])
        }
        configuration.metrics?.recoveryPoint(exceeded: { if case .exceeded = event { true } else { false } }())
    }

    /// Takes one last checkpoint with the guest left paused and waits for its acknowledgement:
    /// afterwards the backup's replica is exactly the paused guest (switchover, consistency checks).
    public func finalCheckpoint(timeout: Duration) throws {
        guard let encoder, let sender else { preconditionFailure("start() first") }
        try checkpoint(resume: false, reason: .interval, encoder: encoder, sender: sender)
        try drain(timeout: timeout)
    }

    /// One checkpoint, taken for `reason`: wait for room in the window, capture, encode and
    /// queue it. Returns why it counts as taken (the catch-up checkpoint counts as that).
    @discardableResult
    private func checkpoint(resume: Bool, reason: CheckpointReason, encoder: CheckpointEncoder, sender: FrameSender) throws -> CheckpointReason {
        // Backpressure: a full window stretches the interval until an ack arrives.
        let (epoch, waited) = try session.waitForWindow()
        // At the pause's priority until queued: a reply waits for the encoding too. A large
        // checkpoint is encoded at the thread's own, not to crowd out the running guest for long.
        return try source.withCheckpointPriority { lower in
            let captured: CapturedCheckpoint
            do {
                captured = try source.capture(epoch: epoch, resume: resume)
            } catch {
                // The capture may have sealed the epoch's disk writes and output before it failed:
                // continuing the session would lose those writes, so it ends, and a new one resyncs.
                configuration.backlog?.invalidate("a checkpoint capture failed: \(error)")
                session.fail(error)
                throw error
            }
            if captured.pageIndices.count > Self.pagesEncodedAtPausePriority { lower() }
            if let lost = captured.diskChangesLost {
                // The epoch's disk writes are gone: no later checkpoint or catch-up can carry them.
                configuration.backlog?.invalidate("\(lost)")
                session.fail(lost)
                throw lost
            }
            let captureTime = ContinuousClock.now
            // Recorded whether or not it is sent: its disk changes were sealed, and a catch-up must carry them.
            configuration.backlog?.captured(epoch: epoch, pages: captured.pageIndices, changes: captured.diskChanges, at: captureTime)
            let capture = session.withLock {
                $0.session.paused(epoch, captured.pauseBreakdown)
                return $0.session.captured(epoch, reason: reason, pause: captured.pause, dirtyPages: captured.pageIndices.count, at: captureTime)
            }
            guard case .send(let catchUp, let unacknowledged, let taken) = capture else {
                encoder.remember(captured)
                throw session.withLock { $0.failure } ?? TransportError.closed("the session ended while checkpoint \(epoch) was being captured")
            }
            // A catch-up carries the backlog too, however few pages it captured.
            if catchUp != nil { lower() }
            configuration.metrics?.checkpointCaptured(taken, pause: captured.pause, dirtyPages: captured.pageIndices.count,
                                                      unacknowledged: unacknowledged)
            let output: CheckpointEncoder.Output
            do {
                output = try encoder.encodeCheckpoint(captured, epoch: epoch, catchUp: catchUp.map { content($0, sender: sender) }, to: sender)
            } catch {
                encoder.remember(captured)
                throw error
            }
            let written = sender.written
            let decision = session.withLock { $0.session.encoded(output, sender: written, backpressure: waited, now: .now) }
            configuration.metrics?.checkpointEncoded(rawBytes: output.rawBytes, wireBytes: output.wireBytes,
                                                     deviceStateRawBytes: output.deviceStateRawBytes,
                                                     deviceStateWireBytes: output.deviceStateWireBytes, framingBytes: output.framingBytes)
            configuration.metrics?.interval(decision)
            return taken
        }
    }

    /// The most pages a checkpoint may have for the checkpoint loop to encode and queue it at the
    /// pause's priority (1–2 ms of encoding here); a larger one is encoded at the thread's own.
    public static let pagesEncodedAtPausePriority = 2048

    /// The catch-up checkpoint's extra content: what the backlog holds after the replica's epoch.
    /// As each part is queued, the catch-up's progress and the lag are checked: a long catch-up
    /// keeps the loop from its checks between checkpoints, and the objective may pass meanwhile.
    private func content(_ plan: ReplicationBacklog.CatchUp, sender: FrameSender) -> CheckpointEncoder.CatchUpContent {
        let backlog = configuration.backlog!
        return CheckpointEncoder.CatchUpContent(resentPages: plan.resentPages) { [self] emit in
            func emitting(_ changes: [DiskChange]) throws {
                try emit(changes)
                let event = self.session.withLock { [written = sender.written] in $0.session.catchUpProgress(sender: written, now: .now) }
                if let event { self.log(event) }
            }
            for entry in plan.entries {
                if let range = entry.journalRange { try backlog.readJournal(range, emitting) }
                if !entry.changes.isEmpty { try emitting(entry.changes) }
            }
            if let tail = plan.tail { try backlog.readJournal(tail, emitting) }
        }
    }

    /// Waits until every checkpoint sent has been acknowledged (or `timeout` passes).
    public func drain(timeout: Duration) throws {
        try session.waitUntilDrained(timeout: timeout)
    }

    /// Ends the session: GOODBYE, close, join threads. Safe after a failure.
    /// - Parameter close: what the GOODBYE tells the backup; `.switchover` hands the VM over
    ///   (send it only after `finalCheckpoint`: the backup activates from the last checkpoint).
    public func stop(_ close: SessionClose = SessionClose(code: .normal, message: "primary stopping")) {
        if let sender, sender.error == nil {
            try? sender.enqueue(Message.goodbye(close).frame)
            try? sender.finish()
        }
        end(TransportError.closed("stopped"))
    }

    /// Drops the session without a GOODBYE, as a crashed primary would (tests of failure paths).
    public func abandon() {
        connection?.close()
        _ = try? sender?.finish()
        end(TransportError.closed("abandoned"))
    }

    private func end(_ reason: TransportError) {
        connection?.close()
        session.fail(reason)
        receiver?.join()
        receiver = nil
        heartbeats?.join()
        heartbeats = nil
    }
}
