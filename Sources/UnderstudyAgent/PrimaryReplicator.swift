import Foundation
import Logging
import Synchronization
import CUnderstudyShims
import UnderstudyDisk
import UnderstudyProtocol
import UnderstudyQEMU
import UnderstudyTransport

/// How the primary replicates.
public struct PrimaryConfiguration: Sendable {
    public var nodeName: String
    public var backup: Endpoint
    public var tls: TLSConfiguration
    /// Time from the start of one checkpoint to the start of the next (zero: back to back).
    public var interval: Duration
    /// Checkpoints captured but not yet acknowledged, at most; the loop waits when it is reached.
    public var maxEpochsInFlight: Int
    /// Frames queued for the sender thread, at most (each up to about 1 MiB).
    public var sendQueueFrames: Int
    /// Pre-copy rounds of the initial sync before the first checkpoint pauses the guest.
    public var preCopyRounds: Int
    /// Pre-copy stops early once a round has at most this many dirty pages.
    public var preCopyStopPages: Int
    public var connectTimeout: Duration
    /// Capabilities the backup must offer, or the session is refused (disk writes need a replica disk).
    public var requiredCapabilities: Capabilities
    /// Heartbeats on the connection, and when the backup counts as lost; nil: none (tests).
    public var heartbeat: HeartbeatMonitor.Configuration?
    /// The number of this session's first checkpoint: a new session of the same running VM
    /// continues the numbering, because the output gate's epochs must keep increasing.
    public var firstEpoch: UInt64 = 1
    /// Where checkpoints, acknowledgements and heartbeat round trips are recorded; nil: nowhere.
    public var metrics: AgentMetrics?
    /// The longest interval the adaptive interval may stretch to, so that checkpoints fit the
    /// link (`interval` is the shortest); nil: the interval is fixed.
    public var maximumInterval: Duration?
    /// The cap on the replication stream, in bytes per second; nil: none.
    public var bandwidthLimit: Int?
    /// Asynchronous protection: output is not held, and the replica may lag by this objective;
    /// nil: synchronous (output commit).
    public var recoveryPoint: RecoveryPointObjective?
    /// Remembers unacknowledged checkpoints across sessions, so that a new session can catch
    /// the backup up instead of resynchronising; nil: every session synchronises in full.
    public var backlog: ReplicationBacklog?
    /// LZ4, or LZ4 high compression for thin links (fewer bytes, more CPU).
    public var compression: CompressionMode = .fast

    public init(nodeName: String, backup: Endpoint, tls: TLSConfiguration, interval: Duration = .milliseconds(25),
                maxEpochsInFlight: Int = 4, sendQueueFrames: Int = 16, preCopyRounds: Int = 5, preCopyStopPages: Int = 256,
                connectTimeout: Duration = .seconds(5), requiredCapabilities: Capabilities = [.deviceState],
                heartbeat: HeartbeatMonitor.Configuration? = nil) {
        self.heartbeat = heartbeat
        self.nodeName = nodeName
        self.backup = backup
        self.tls = tls
        self.interval = interval
        self.maxEpochsInFlight = maxEpochsInFlight
        self.sendQueueFrames = sendQueueFrames
        self.preCopyRounds = preCopyRounds
        self.preCopyStopPages = preCopyStopPages
        self.connectTimeout = connectTimeout
        self.requiredCapabilities = requiredCapabilities
    }
}

/// Asynchronous protection's bound on how far the replica may lag behind the guest.
public struct RecoveryPointObjective: Sendable, Equatable {
    public var objective: Duration
    /// Slow the guest (pause it briefly between checkpoints) while the lag is over the objective.
    public var throttleGuest: Bool

    public init(objective: Duration, throttleGuest: Bool) {
        self.objective = objective
        self.throttleGuest = throttleGuest
    }
}

/// How a session brought the backup's replica up to date before checkpointing.
public enum SessionStart: Sendable, Equatable {
    /// A full synchronisation, and why (nil: a new backup, nothing to catch up from).
    case fullSync(reason: String?)
    /// One catch-up checkpoint on top of the replica's committed epoch `base`.
    case catchUp(base: UInt64)
}

/// Counters of a primary's session, read with `PrimaryReplicator.statistics`.
public struct PrimaryStatistics: Sendable {
    public var syncPages = 0
    public var syncWireBytes = 0
    public var syncDuration: Duration = .zero
    /// Initial sync progress: guest memory and disk bytes copied, and the bytes known to be
    /// copied in all (it grows when a pre-copy round finds pages written meanwhile).
    public var syncBytesDone = 0
    public var syncBytesTotal = 0
    public var syncStarted: ContinuousClock.Instant?
    public var checkpointsSent = 0
    /// The newest epoch this session sent (epochs continue across sessions; `checkpointsSent` does not).
    public var currentEpoch: UInt64 = 0
    public var checkpointsAcknowledged = 0
    public var lastAcknowledgedEpoch: UInt64 = 0
    public var dirtyPages = 0
    public var rawBytes = 0
    public var wireBytes = 0
    /// The most recent pauses and ack latencies (at most `PrimaryStatistics.window` of each),
    /// so that a long-running agent keeps a bounded history.
    public var pauses: [Duration] = []
    public var ackLatencies: [Duration] = []
    /// When the most recent checkpoints were captured and how many pages each had.
    public var recent: [(at: ContinuousClock.Instant, dirtyPages: Int)] = []
    public var encodings: [PageEncoding: Int] = [:]
    /// How the session started; nil until the backup's WELCOME.
    public var start: SessionStart?
    /// The catch-up checkpoint: its pages and disk writes, wire bytes, and how long from its
    /// capture until the backup acknowledged it (nil until acknowledged).
    public var catchUpPages = 0
    public var catchUpDiskWrites = 0
    public var catchUpWireBytes = 0
    public var catchUpDuration: Duration?
    /// The adaptive interval's current choice (the fixed interval's, when it does not adapt).
    public var interval: CheckpointIntervalController.Decision?
    /// Asynchronous mode: the replica's lag now, its peaks (just before each acknowledgement),
    /// whether it is over the objective, and how hard the guest is throttled (share of each interval paused).
    public var lag: Duration?
    public var lagPeaks: [Duration] = []
    public var recoveryPointExceeded = false
    public var throttle = 0.0
    public var throttledFor: Duration = .zero

    public static let window = 10_000

    public init() {}

    mutating func note(pause: Duration, dirtyPages: Int, at time: ContinuousClock.Instant) {
        Self.append(pause, to: &pauses)
        Self.append((time, dirtyPages), to: &recent)
    }

    mutating func note(ackLatency: Duration) { Self.append(ackLatency, to: &ackLatencies) }

    mutating func note(lagPeak: Duration) { Self.append(lagPeak, to: &lagPeaks) }

    private static func append<T>(_ value: T, to samples: inout [T]) {
        samples.append(value)
        if samples.count >= 2 * window { samples.removeFirst(samples.count - window) }
    }

    /// Checkpoints per second over the last `span`.
    public func checkpointsPerSecond(over span: Duration = .seconds(5), now: ContinuousClock.Instant = .now) -> Double {
        let since = now - span
        return Double(recent.reversed().prefix { $0.at >= since }.count) / span.seconds
    }
}

/// The primary's replication engine: connects to the backup, runs the initial sync, then
/// checkpoints the source on the calling (dedicated) thread, while a receiver thread takes acks.
public final class PrimaryReplicator: @unchecked Sendable {
    public let configuration: PrimaryConfiguration
    private let source: CheckpointSource
    private let logger: Logger
    private let session: SessionGuard
    private var connection: FrameConnection?
    private var sender: FrameSender?
    private var receiver: JoinableThread?
    private var heartbeats: JoinableThread?
    /// Signs of life from the backup, fed by the receiver thread, read by the heartbeat thread.
    private let liveness = Mutex<HeartbeatMonitor?>(nil)
    private var encoder: CheckpointEncoder?
    /// Called on the receiver thread with each acknowledged epoch; output of epochs up to it may leave.
    private let onRelease: @Sendable (UInt64) -> Void
    /// The guest's disk, copied in the initial sync; its later writes come with the checkpoints.
    private let disk: DiskImage?
    /// Set by `start` when the session catches the backup up: the first checkpoint carries it.
    private var pendingCatchUp: ReplicationBacklog.CatchUp?
    /// What the sender had written at the previous checkpoint (the link's throughput is measured between them).
    private var lastUsage = FrameSender.Usage()
    private var measuredThroughput: Double?
    /// Acknowledged bytes at the start of the current measurement span, and whether the window
    /// was full at some point in it.
    private var acknowledged = (at: ContinuousClock.now, bytes: 0, backpressure: false)
    /// The link's throughput as the acknowledgements showed it under backpressure.
    private var backpressureThroughput: Double?

    /// - Parameter disk: the image the guest's disk server writes. Its recorder must have been
    ///   recording since before the guest could write, so that every write the sync's copy may
    ///   miss is in a checkpoint.
    public init(source: CheckpointSource, configuration: PrimaryConfiguration, disk: DiskImage? = nil, logger: Logger,
                onRelease: @escaping @Sendable (UInt64) -> Void = { _ in }) {
        self.source = source
        self.disk = disk
        self.configuration = configuration
        self.logger = logger
        self.onRelease = onRelease
        let interval = CheckpointIntervalController(minimum: configuration.interval,
                                                    maximum: max(configuration.interval, configuration.maximumInterval ?? configuration.interval))
        session = SessionGuard(machine: PrimarySessionStateMachine(identity: source.identity,
                                                                   maxEpochsInFlight: configuration.maxEpochsInFlight,
                                                                   firstEpoch: configuration.firstEpoch),
                               interval: interval, metrics: configuration.metrics)
    }

    /// The last epoch this session captured (the next session starts after it), whether or not it was sent.
    public var lastCapturedEpoch: UInt64 { session.withLock { max($0.machine.lastSentEpoch, $0.capturedThrough) } }

    public var statistics: PrimaryStatistics {
        session.withLock { p in
            var statistics = p.statistics
            statistics.interval = p.interval.decision
            if let recovery = p.recovery {
                statistics.lag = recovery.lag(now: .now)
                statistics.recoveryPointExceeded = recovery.isExceeded
                statistics.throttle = recovery.throttle
            }
            return statistics
        }
    }

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
        logger.info("connected to backup", metadata: ["backup": "\(configuration.backup)", "peer": "\(stream.peerName)"])
        try connection.send(.hello(Hello(identity: source.identity, requiredCapabilities: configuration.requiredCapabilities,
                                          nodeName: configuration.nodeName)))
        let welcome = try connection.receive()
        let capabilities: Capabilities
        let committed: UInt64
        switch session.withLock({ $0.machine.received(welcome) }) {
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
        switch catchUpPlan(capabilities: capabilities, backupCommitted: committed) {
        case .catchUp(let plan):
            pendingCatchUp = plan
            session.withLock { $0.statistics.start = .catchUp(base: plan.base) }
            configuration.metrics?.sessionStarted(catchUp: true)
            logger.notice("catching the backup up with one checkpoint instead of a full resynchronisation", metadata: [
                "replica-epoch": "\(plan.base)", "checkpoints-to-resend": "\(plan.entries.count)",
                "pages-to-resend": "\(plan.resentPages.count)", "journal-bytes": "\(configuration.backlog?.journalBytes ?? 0)"])
            try sender.enqueue(Message.catchUpBegin(baseEpoch: plan.base).frame)
        case .fullSync(let reason):
            session.withLock { $0.statistics.start = .fullSync(reason: reason) }
            configuration.metrics?.sessionStarted(catchUp: false)
            if let reason { logger.notice("full resynchronisation", metadata: ["why": "\(reason)"]) }
            beforeFullSync()
            configuration.backlog?.reset()
            try initialSync(encoder: encoder, sender: sender)
        }
        session.withLock { p in
            p.machine.syncFinished()
            p.recovery = configuration.recoveryPoint.map { RecoveryPointMonitor(objective: $0.objective, throttles: $0.throttleGuest, now: .now) }
        }
        lastUsage = sender.written
    }

    private enum Plan {
        case catchUp(ReplicationBacklog.CatchUp)
        /// Why not a catch-up (nil: no backlog is kept, so there was never anything to catch up from).
        case fullSync(reason: String?)
    }

    private func catchUpPlan(capabilities: Capabilities, backupCommitted: UInt64) -> Plan {
        guard let backlog = configuration.backlog else { return .fullSync(reason: nil) }
        guard capabilities.contains(.catchUp) else { return .fullSync(reason: "the backup does not offer catch-up") }
        switch backlog.catchUp(onto: backupCommitted) {
        case .success(let plan): return .catchUp(plan)
        case .failure(let refusal): return .fullSync(reason: refusal.reason)
        }
    }

    /// Iterative pre-copy: send all memory while the guest runs, then what it dirtied meanwhile,
    /// until a round is small; the first checkpoint (guest paused) sends the rest.
    private func initialSync(encoder: CheckpointEncoder, sender: FrameSender) throws {
        let started = ContinuousClock.now
        try source.startTracking()
        try sender.enqueue(Message.syncBegin(SyncBegin(pageCount: source.identity.pageCount)).frame)
        var output = CheckpointEncoder.Output()
        let pageSize = Int(source.identity.pageSize)
        let diskRanges = disk?.dataRanges() ?? []
        session.withLock {
            $0.statistics.syncStarted = started
            $0.statistics.syncBytesTotal = Int(source.identity.memorySize) + diskRanges.reduce(0) { $0 + Int($1.count) }
        }
        let progress: @Sendable (Int) -> Void = { [session] bytes in session.withLock { $0.statistics.syncBytesDone += bytes } }
        if let disk { try syncDisk(disk, ranges: diskRanges, encoder: encoder, sender: sender, into: &output, progress: progress) }
        var pages = Array(0..<source.identity.pageCount)
        var round = 1
        while true {
            try encoder.encodeSync(pages: pages, from: source.syncMemory, to: sender, into: &output, progress: progress)
            logger.info("initial sync round done", metadata: ["round": "\(round)", "pages": "\(pages.count)",
                                                             "total-pages": "\(output.pages)"])
            // Collecting hands these pages to us and re-arms tracking: they must be sent, by
            // another round or the last one below. Pages written while they are being read
            // are tracked again and go into the first checkpoint.
            pages = try source.collectDirtyPages()
            session.withLock { [count = pages.count] in $0.statistics.syncBytesTotal += count * pageSize }
            round += 1
            if pages.count <= configuration.preCopyStopPages || round > max(1, configuration.preCopyRounds) { break }
        }
        try encoder.encodeSync(pages: pages, from: source.syncMemory, to: sender, into: &output, progress: progress)
        try sender.enqueue(Message.syncEnd(encoder.syncSummary(output)).frame)
        let duration = ContinuousClock.now - started
        session.withLock {
            $0.statistics.syncPages = output.pages
            $0.statistics.syncWireBytes = output.wireBytes
            $0.statistics.syncDuration = duration
        }
        logger.info("initial sync sent", metadata: ["pages": "\(output.pages)", "wire-bytes": "\(output.wireBytes)",
                                                   "seconds": "\(duration)"])
    }

    /// Copies the disk's data (holes and all-zero chunks are skipped: the backup's replica starts
    /// zeroed). The guest may be writing meanwhile: each such write is recorded and replayed in
    /// the first checkpoint, on top of whatever this copy read, which ends at the same bytes.
    private func syncDisk(_ disk: DiskImage, ranges: [Range<UInt64>], encoder: CheckpointEncoder, sender: FrameSender,
                          into output: inout CheckpointEncoder.Output, progress: (Int) -> Void) throws {
        let chunk = DiskWriteBatch.maxEntryBytes
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buffer.deallocate() }
        var pending: [DiskChange] = []
        for range in ranges {
            var offset = range.lowerBound
            while offset < range.upperBound {
                let count = Int(min(UInt64(chunk), range.upperBound - offset))
                let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count])
                try disk.read(into: slice, at: offset)
                if us_is_zero(slice.baseAddress, count) == 0 { pending.append(.write(offset: offset, data: .bytes(Array(slice)))) }
                progress(count)
                if pending.count == 8 {
                    try encoder.encodeDisk(pending, epoch: 0, to: sender, into: &output)
                    pending.removeAll(keepingCapacity: true)
                }
                offset += UInt64(count)
            }
        }
        try encoder.encodeDisk(pending, epoch: 0, to: sender, into: &output)
        logger.info("initial disk sync sent", metadata: ["bytes": "\(output.diskBytes)", "size": "\(disk.size)"])
    }

    /// Runs `count` checkpoints (nil: until `stop` or an error). Call on a dedicated thread.
    public func runCheckpoints(count: Int? = nil, shouldStop: () -> Bool = { false }) throws {
        guard let encoder, let sender else { preconditionFailure("start() first") }
        var done = 0
        var next = ContinuousClock.now
        while count.map({ done < $0 }) ?? true, !shouldStop() {
            let now = ContinuousClock.now
            if next > now { Thread.sleep(forTimeInterval: (next - now).seconds) }
            try checkpoint(resume: true, encoder: encoder, sender: sender)
            done += 1
            let (interval, throttle, event) = session.withLock { p in
                (p.interval.interval, p.recovery?.throttle ?? 0, p.recovery?.poll(now: .now))
            }
            if let event { log(event) }
            // Asynchronous mode, lag over the objective: the guest stays paused for a share of
            // each interval, which slows its dirtying to what the link carries.
            if throttle > 0 {
                let hold = interval * throttle
                try source.hold(for: hold)
                session.withLock { $0.statistics.throttledFor += hold }
            }
            // On a fixed grid, so sleeps that overshoot do not add up and slow the rate; a
            // checkpoint that overran its interval restarts the grid instead of bursting.
            next = max(next + interval, ContinuousClock.now)
        }
    }

    private func log(_ event: RecoveryPointMonitor.Event) {
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
        try checkpoint(resume: false, encoder: encoder, sender: sender)
        try drain(timeout: timeout)
    }

    /// One checkpoint: wait for room in the window, capture, encode and queue it.
    private func checkpoint(resume: Bool, encoder: CheckpointEncoder, sender: FrameSender) throws {
        // Backpressure: a full window stretches the interval until an ack arrives.
        let (epoch, waited) = try session.waitForWindow()
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
        let captureTime = ContinuousClock.now
        let catchUp = pendingCatchUp
        pendingCatchUp = nil
        // Recorded whether or not it is sent: its disk changes were sealed, and a catch-up must carry them.
        configuration.backlog?.captured(epoch: epoch, pages: captured.pageIndices, changes: captured.diskChanges)
        let (sendable, previousCapture, unacknowledged) = session.withLock { p in
            p.capturedThrough = epoch
            let previous = p.statistics.recent.last?.at
            // The session can end while the guest is captured (the backup lost, a protocol error
            // seen by the receiving thread): this checkpoint is not sent; a new session catches up or resyncs.
            guard p.machine.canSendCheckpoint else { return (false, previous, 0) }
            p.machine.checkpointSent(epoch)
            p.sentAt[epoch] = captureTime
            p.statistics.note(pause: captured.pause, dirtyPages: captured.pageIndices.count, at: captureTime)
            p.recovery?.captured(epoch, at: captureTime)
            if catchUp != nil { p.catchUp = (epoch, captureTime) }
            return (true, previous, p.machine.inFlight.count)
        }
        guard sendable else {
            encoder.remember(captured)
            throw session.withLock { $0.failure } ?? TransportError.closed("the session ended while checkpoint \(epoch) was being captured")
        }
        configuration.metrics?.checkpointCaptured(pause: captured.pause, dirtyPages: captured.pageIndices.count,
                                                  unacknowledged: unacknowledged)
        let output: CheckpointEncoder.Output
        do {
            output = try encoder.encodeCheckpoint(captured, epoch: epoch, catchUp: catchUp.map(content), to: sender)
        } catch {
            encoder.remember(captured)
            throw error
        }
        let decision = session.withLock { p in
            // An ACK that overtook this bookkeeping counts at once.
            if epoch <= p.statistics.lastAcknowledgedEpoch { p.acknowledgedBytes += output.wireBytes } else { p.unacknowledgedBytes[epoch] = output.wireBytes }
            let budget = linkBudget(sender.written, acknowledgedBytes: p.acknowledgedBytes, backpressure: waited)
            p.statistics.checkpointsSent += 1
            p.statistics.currentEpoch = epoch
            p.statistics.dirtyPages += output.pages
            p.statistics.rawBytes += output.rawBytes
            p.statistics.wireBytes += output.wireBytes
            p.statistics.encodings.merge(output.encodings, uniquingKeysWith: +)
            if catchUp != nil {
                p.statistics.catchUpPages = output.pages
                p.statistics.catchUpDiskWrites = output.diskWrites
                p.statistics.catchUpWireBytes = output.wireBytes
            }
            // Demand is what checkpoints at the chosen interval would need. The time since the
            // previous capture would understate it under backpressure: the link, waiting for
            // acknowledgements, stretched that span already.
            let chosen = p.interval.interval
            return p.interval.checkpointSent(wireBytes: output.wireBytes,
                                             span: chosen > .zero ? chosen : captureTime - (previousCapture ?? captureTime), budget: budget)
        }
        configuration.metrics?.checkpointEncoded(rawBytes: output.rawBytes, wireBytes: output.wireBytes)
        configuration.metrics?.interval(decision)
    }

    /// The catch-up checkpoint's extra content: what the backlog holds after the replica's epoch.
    private func content(_ plan: ReplicationBacklog.CatchUp) -> CheckpointEncoder.CatchUpContent {
        let backlog = configuration.backlog!
        return CheckpointEncoder.CatchUpContent(resentPages: plan.resentPages) { emit in
            for entry in plan.entries {
                if let range = entry.journalRange { try backlog.readJournal(range, emit) }
                if !entry.changes.isEmpty { try emit(entry.changes) }
            }
            if let tail = plan.tail { try backlog.readJournal(tail, emit) }
        }
    }

    /// What the link may carry, in bytes per second: the lowest of the cap, the throughput the
    /// sender achieved while it was busy, and the bytes the backup acknowledged per second while
    /// the window of checkpoints in flight was full (`backpressure`); nil: none known.
    ///
    /// The sender is only busy when the socket's buffers are full; a window of a few checkpoints
    /// may never fill them, and then the acknowledgements, not the sender, show the link's pace.
    /// That measurement stands after the backpressure ended (a stretched interval is what ended
    /// it), and only rises when the link is seen carrying more; a shorter interval that brings
    /// the backpressure back measures it again.
    private func linkBudget(_ usage: FrameSender.Usage, acknowledgedBytes: Int, backpressure: Bool) -> Double? {
        let now = ContinuousClock.now
        let busy = usage.busy - lastUsage.busy
        // Too little busy time says nothing about the link: keep the previous measurement.
        if busy >= .milliseconds(20) {
            measuredThroughput = Double(usage.bytes - lastUsage.bytes) / busy.seconds
            lastUsage = usage
        }
        let span = now - acknowledged.at
        if span >= .milliseconds(500) {
            let rate = Double(acknowledgedBytes - acknowledged.bytes) / span.seconds
            if acknowledged.backpressure, rate > 0 {
                backpressureThroughput = rate
            } else if let measured = backpressureThroughput, rate > measured {
                backpressureThroughput = rate
            }
            acknowledged = (now, acknowledgedBytes, backpressure)
        } else if backpressure {
            acknowledged.backpressure = true
        }
        let limits = [configuration.bandwidthLimit.map(Double.init), measuredThroughput, backpressureThroughput].compactMap { $0 }
        return limits.min()
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

    /// Sends a heartbeat whenever nothing was queued for an interval, and ends the session when
    /// nothing at all came from the backup for the timeout (a hung or unreachable backup keeps
    /// the connection open but silent).
    private func heartbeatLoop(_ configuration: HeartbeatMonitor.Configuration, connection: FrameConnection, sender: FrameSender) {
        liveness.withLock { $0 = HeartbeatMonitor(configuration: configuration, now: .now) }
        var sequence: UInt64 = 0
        while session.waitForFailure(timeout: configuration.interval / 4) == nil {
            let now = ContinuousClock.now
            let decision = liveness.withLock { $0!.poll(now: now) }
            if let silence = decision.peerLost {
                let error = TransportError.timedOut("the backup sent nothing for \(silence.wholeMilliseconds) ms (heartbeat timeout \(configuration.timeout.wholeMilliseconds) ms)")
                logger.error("backup lost", metadata: ["silent-ms": "\(silence.wholeMilliseconds)"])
                session.fail(error)
                connection.close()
                return
            }
            if decision.sendHeartbeat {
                sequence += 1
                let beat = Message.heartbeat(.stamped(sequence: sequence))
                if sender.offer(beat.frame) { liveness.withLock { $0!.sent(at: now) } }
            }
        }
    }

    /// - Parameter echoHeartbeats: the session agreed heartbeat-echo: answer the backup's heartbeats.
    private func receiveLoop(_ connection: FrameConnection, sender: FrameSender, echoHeartbeats: Bool) {
        while true {
            let frame: Frame
            do {
                frame = try connection.receive()
            } catch {
                session.fail(error)
                return
            }
            let now = ContinuousClock.now
            liveness.withLock { _ = $0?.heard(on: .replication, at: now) }
            // Nil once this side has ended the session (heartbeat timeout, a failed capture): what
            // still arrives before the connection closes no longer matters.
            let action = session.withLock { $0.failure == nil ? $0.machine.received(frame) : nil }
            guard let action else { return }
            switch action {
            case .release(let epoch):
                let acknowledged = session.acknowledge(through: epoch, at: .now)
                configuration.backlog?.acknowledged(through: epoch)
                onRelease(epoch)
                if let event = acknowledged.recoveryPoint { log(event) }
                if let duration = acknowledged.caughtUp {
                    logger.notice("the backup caught up", metadata: ["epoch": "\(epoch)", "seconds": "\(duration)"])
                }
            case .heartbeat(let beat):
                // Never waits: an echo that finds the queue full is dropped (one sample fewer).
                if echoHeartbeats { _ = sender.offer(Message.heartbeatEcho(beat).frame) }
            case .heartbeatEcho(let beat):
                configuration.metrics?.heartbeatEchoed(beat)
            case .peerClosed(let close):
                logger.warning("backup ended the session", metadata: ["code": "\(close.code)", "reason": "\(close.message)"])
                session.fail(ProtocolError.rejected(code: close.code, message: close.message))
                connection.close()
                return
            case .close(let error):
                logger.error("backup broke the protocol", metadata: ["error": "\(error)"])
                try? connection.send(.goodbye(SessionClose(code: error.rejectCode, message: error.description)))
                session.fail(error)
                connection.close()
                return
            case .startSync:
                session.fail(ProtocolError.unexpected("second WELCOME"))
                connection.close()
                return
            }
        }
    }
}

/// The session state machine and statistics under one lock, with waits for acks.
final class SessionGuard: @unchecked Sendable {
    struct Protected {
        var machine: PrimarySessionStateMachine
        var interval: CheckpointIntervalController
        var statistics = PrimaryStatistics()
        var sentAt: [UInt64: ContinuousClock.Instant] = [:]
        var failure: Error?
        /// The newest epoch captured, sent or not (a session can end while one is captured).
        var capturedThrough: UInt64 = 0
        /// Asynchronous mode's lag bookkeeping; nil: synchronous.
        var recovery: RecoveryPointMonitor?
        /// The catch-up checkpoint until it is acknowledged, and when it was captured.
        var catchUp: (epoch: UInt64, capturedAt: ContinuousClock.Instant)?
        /// Wire bytes of each checkpoint not yet acknowledged, and of all acknowledged ones: what
        /// the link delivered, for its throughput under backpressure.
        var unacknowledgedBytes: [UInt64: Int] = [:]
        var acknowledgedBytes = 0
    }

    /// What an acknowledgement changed beyond the window, for the log.
    struct Acknowledged {
        var recoveryPoint: RecoveryPointMonitor.Event?
        /// The catch-up checkpoint is acknowledged, this long after its capture.
        var caughtUp: Duration?
    }

    private let condition = NSCondition()
    private var protected: Protected
    private let metrics: AgentMetrics?

    init(machine: PrimarySessionStateMachine, interval: CheckpointIntervalController, metrics: AgentMetrics?) {
        protected = Protected(machine: machine, interval: interval)
        self.metrics = metrics
    }

    func withLock<T>(_ body: (inout Protected) throws -> T) rethrows -> T {
        condition.lock()
        defer { condition.unlock() }
        return try body(&protected)
    }

    func acknowledge(through epoch: UInt64, at now: ContinuousClock.Instant) -> Acknowledged {
        defer { condition.broadcast() }
        return withLock { p in
            for (sent, at) in p.sentAt where sent <= epoch {
                p.statistics.note(ackLatency: now - at)
                metrics?.acknowledged(latency: now - at)
                p.sentAt[sent] = nil
                p.statistics.checkpointsAcknowledged += 1
            }
            p.statistics.lastAcknowledgedEpoch = epoch
            for (sent, bytes) in p.unacknowledgedBytes where sent <= epoch {
                p.acknowledgedBytes += bytes
                p.unacknowledgedBytes[sent] = nil
            }
            metrics?.committed(epoch: epoch, unacknowledged: p.machine.inFlight.count)
            var result = Acknowledged()
            if let (peak, event) = p.recovery?.acknowledged(through: epoch, now: now) {
                p.statistics.note(lagPeak: peak)
                metrics?.replicaLagged(peak: peak)
                result.recoveryPoint = event
            }
            if let catchUp = p.catchUp, catchUp.epoch <= epoch {
                result.caughtUp = now - catchUp.capturedAt
                p.statistics.catchUpDuration = result.caughtUp
                p.catchUp = nil
            }
            return result
        }
    }

    func fail(_ error: Error) {
        withLock { p in
            if p.failure == nil { p.failure = error }
            p.machine.abort()
        }
        condition.broadcast()
    }

    /// Waits until the session fails or `timeout` passes; returns the failure, if any.
    func waitForFailure(timeout: Duration) -> Error? {
        let deadline = Date(timeIntervalSinceNow: timeout.seconds)
        condition.lock()
        defer { condition.unlock() }
        while protected.failure == nil, condition.wait(until: deadline) {}
        return protected.failure
    }

    /// Waits for room in the window; returns the next epoch number, and whether it had to wait
    /// (backpressure: the link, not the interval, set the pace).
    func waitForWindow() throws -> (epoch: UInt64, waited: Bool) {
        condition.lock()
        defer { condition.unlock() }
        var waited = false
        while true {
            if let failure = protected.failure { throw failure }
            if protected.machine.canSendCheckpoint { return (protected.machine.nextEpoch, waited) }
            waited = true
            condition.wait()
        }
    }

    func waitUntilDrained(timeout: Duration) throws {
        let deadline = Date(timeIntervalSinceNow: timeout.seconds)
        condition.lock()
        defer { condition.unlock() }
        while !protected.machine.inFlight.isEmpty {
            if let failure = protected.failure { throw failure }
            if !condition.wait(until: deadline) {
                throw TransportError.timedOut("\(protected.machine.inFlight.count) checkpoints still unacknowledged after \(timeout)")
            }
        }
    }
}
