import Foundation
import Logging
import UnderstudyProtocol
import UnderstudyReplica
import UnderstudyTransport

/// How the backup listens and where it keeps the replica.
public struct BackupConfiguration: Sendable {
    public var nodeName: String
    public var listen: Endpoint
    public var tls: TLSConfiguration
    public var identity: VMIdentity
    public var replicaDirectory: String
    /// The replica disk (default: `disk.img` in the replica directory), when the VM has a disk.
    public var replicaDisk: String?
    /// Capabilities this backup implements and offers.
    public var capabilities: Capabilities
    /// Checkpoints received and waiting to be applied, at most; the receiver stops reading beyond.
    public var applyQueueDepth: Int
    /// How often to send the primary a heartbeat; nil: never (tests of the bare protocol).
    public var heartbeatInterval: Duration?
    /// Where commits and heartbeat round trips are recorded; nil: nowhere.
    public var metrics: AgentMetrics?

    public init(nodeName: String, listen: Endpoint, tls: TLSConfiguration, identity: VMIdentity, replicaDirectory: String,
                replicaDisk: String? = nil, capabilities: Capabilities = .supported, applyQueueDepth: Int = 8) {
        self.replicaDisk = replicaDisk
        self.nodeName = nodeName
        self.listen = listen
        self.tls = tls
        self.identity = identity
        self.replicaDirectory = replicaDirectory
        self.capabilities = capabilities
        self.applyQueueDepth = applyQueueDepth
    }
}

/// Counters of a backup, read with `BackupReceiver.statistics`.
public struct BackupStatistics: Sendable {
    /// Sessions accepted, and sessions that have ended (their apply thread finished).
    public var sessions = 0
    public var sessionsEnded = 0
    public var syncPages = 0
    public var checkpointsCommitted = 0
    public var committedEpoch: UInt64 = 0
    public var pagesApplied = 0
    public var bytesReceived: UInt64 = 0
    public var lastSessionError: String?
}

/// What happens to a backup's sessions, for whoever decides about failover.
public enum BackupEvent: Sendable {
    /// A frame arrived from the primary (a sign of life).
    case heard
    /// A primary's session was accepted.
    case sessionStarted
    /// The primary handed the VM over (switchover): activate from the last checkpoint, which
    /// is applied once the session has ended.
    case handover
}

/// The backup's replication engine: accepts one primary at a time, verifies every checkpoint
/// with `BackupSessionStateMachine`, and applies it to the `ReplicaStore`.
///
/// Per session, the receiving thread stages frames; an apply thread decodes each verified
/// checkpoint into the journal, seals it, acknowledges it, then copies it into the replica.
/// "Acknowledged" therefore means "survives a crash of this process": the primary releases
/// output only for checkpoints the replica can no longer lose.
public final class BackupReceiver: @unchecked Sendable {
    public let configuration: BackupConfiguration
    public let store: ReplicaStore
    private let listener: TCPListener
    private let context: TLSContext
    private let logger: Logger
    private let lock = NSLock()
    private var activeSession: FrameConnection?
    private var stopping = false
    private var stats = BackupStatistics()
    private let decoders: [PageDecoder]
    /// Held by the apply thread for each piece of replica work, and by `withReplicaPaused`.
    private let storeLock = NSLock()

    private let events: @Sendable (BackupEvent) -> Void

    public init(configuration: BackupConfiguration, logger: Logger, events: @escaping @Sendable (BackupEvent) -> Void = { _ in }) throws {
        self.events = events
        self.configuration = configuration
        self.logger = logger
        context = try TLSContext(role: .server, configuration: configuration.tls)
        store = try ReplicaStore(directory: configuration.replicaDirectory, identity: configuration.identity,
                                 diskPath: configuration.replicaDisk)
        if let recovery = store.recovery { logger.notice("replica recovered", metadata: ["action": "\(recovery)"]) }
        listener = try TCPListener(endpoint: configuration.listen)
        decoders = (0..<ProcessInfo.processInfo.activeProcessorCount).map { _ in PageDecoder(pageSize: Int(configuration.identity.pageSize)) }
        stats.committedEpoch = store.state.committedEpoch
        configuration.metrics?.committed(epoch: store.state.committedEpoch, fresh: false)
        logger.info("backup listening", metadata: ["endpoint": "\(listener.endpoint)", "replica": "\(configuration.replicaDirectory)",
                                                   "replica-phase": "\(store.state.phase)", "committed-epoch": "\(store.state.committedEpoch)"])
    }

    /// The bound listening endpoint (the real port when port 0 was configured).
    public var endpoint: Endpoint { listener.endpoint }

    public var statistics: BackupStatistics {
        lock.lock()
        defer { lock.unlock() }
        return stats
    }

    /// Accepts connections until `stop`. Each connection gets its own thread; while a session is
    /// active, further primaries are refused as busy. Call on a dedicated thread.
    public func serve() {
        while true {
            let accepted: (fd: Int32, peer: String)
            do {
                accepted = try listener.accept()
            } catch {
                if !isStopping { logger.error("accept failed", metadata: ["error": "\(error)"]) }
                return
            }
            _ = JoinableThread(name: "backup-session") { [self] in
                handshakeAndServe(fd: accepted.fd, peer: accepted.peer)
            }
        }
    }

    /// Runs `body` between two pieces of replica work: the replica is a whole committed checkpoint
    /// (or not committed at all, see its phase) and nothing writes it meanwhile. Checkpoints keep
    /// arriving and queue up (their ACKs wait), so keep `body` short.
    public func withReplicaPaused<T>(_ body: (ReplicaStore) throws -> T) rethrows -> T {
        storeLock.lock()
        defer { storeLock.unlock() }
        return try body(store)
    }

    /// Waits until no session is active (after `stop`, the last one has applied what it sealed).
    public func waitUntilIdle() {
        while true {
            lock.lock()
            let idle = activeSession == nil && stats.sessions == stats.sessionsEnded
            lock.unlock()
            if idle { return }
            Thread.sleep(forTimeInterval: 0.002)
        }
    }

    /// Stops accepting and ends the active session (its open epoch is discarded).
    public func stop() {
        lock.lock()
        stopping = true
        let session = activeSession
        lock.unlock()
        listener.close()
        session?.close()
    }

    private var isStopping: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopping
    }

    private func handshakeAndServe(fd: Int32, peer: String) {
        let connection: FrameConnection
        do {
            connection = FrameConnection(stream: try TLSStream.accept(fd: fd, peer: peer, context: context))
        } catch {
            logger.warning("refused connection", metadata: ["peer": "\(peer)", "error": "\(error)"])
            return
        }
        lock.lock()
        let busy = activeSession != nil || stopping
        if !busy {
            activeSession = connection
            stats.sessions += 1
        }
        lock.unlock()
        guard !busy else {
            logger.warning("refused a second primary while a session is active", metadata: ["peer": "\(peer)"])
            try? connection.send(.reject(SessionClose(code: .busy, message: "this backup already serves a primary")))
            connection.close()
            return
        }
        events(.sessionStarted)
        var heartbeats: JoinableThread?
        let sessionOver = Latch()
        let welcomed = Latch()
        if let interval = configuration.heartbeatInterval {
            heartbeats = JoinableThread(name: "backup-heartbeat") {
                // Nothing but WELCOME may come first: the primary refuses any other frame before it.
                while !welcomed.wait(timeout: interval) {
                    if sessionOver.isSet { return }
                }
                var sequence: UInt64 = 0
                repeat {
                    sequence += 1
                    let beat = Message.heartbeat(.stamped(sequence: sequence))
                    guard (try? connection.send(beat)) != nil else { return }
                } while !sessionOver.wait(timeout: interval)
            }
        }
        let outcome = runSession(connection, welcomed: welcomed)
        sessionOver.trigger()
        connection.close()
        heartbeats?.join()
        lock.lock()
        activeSession = nil
        stats.sessionsEnded += 1
        stats.lastSessionError = outcome
        stats.bytesReceived += connection.bytesReceived
        lock.unlock()
        connection.close()
    }

    /// Runs one session to its end; returns why it ended abnormally (nil when orderly).
    /// - Parameter welcomed: set once WELCOME has been sent (heartbeats may follow it).
    private func runSession(_ connection: FrameConnection, welcomed: Latch) -> String? {
        var machine = BackupSessionStateMachine(identity: configuration.identity, capabilities: configuration.capabilities,
                                                committedEpoch: store.state.committedEpoch)
        let applier = ReplicaApplier(store: store, storeLock: storeLock, connection: connection, decoders: decoders,
                                     depth: configuration.applyQueueDepth, logger: logger) { [self] work in
            lock.lock()
            defer { lock.unlock() }
            switch work {
            case .syncPages(let batch): stats.syncPages += batch.entries.count
            case .commit(let staged):
                stats.checkpointsCommitted += 1
                stats.committedEpoch = staged.epoch
                stats.pagesApplied += staged.pageCount
                configuration.metrics?.checkpointCommitted(epoch: staged.epoch)
            case .beginSync, .finishSync, .syncDiskWrites: break
            }
        }
        var staged: StagedEpoch?
        defer { applier.finish() }
        while true {
            let frame: Frame
            do {
                frame = try connection.receive()
                events(.heard)
            } catch let error as ProtocolError {
                // A bad header: the state machine never saw the frame, but the session is over all the same.
                machine.abort()
                try? connection.send(.goodbye(SessionClose(code: error.rejectCode, message: error.description)))
                return fail("malformed frame from \(machine.peerName ?? connection.stream.peer): \(error)")
            } catch {
                // A failed apply closes the connection itself: report the cause, not the symptom.
                if let failure = applier.failure { return fail("replica apply failed: \(failure)") }
                return isStopping ? nil : fail("connection lost: \(error)")
            }
            if let failure = applier.failure {
                try? connection.send(.goodbye(SessionClose(code: .internalError, message: failure)))
                return fail("replica apply failed: \(failure)")
            }
            switch machine.received(frame) {
            case .send(let message):
                do {
                    try connection.send(message)
                } catch {
                    return fail("cannot answer the primary: \(error)")
                }
                if case .welcome = message {
                    welcomed.trigger()
                    logger.info("primary connected", metadata: ["primary": "\(machine.peerName ?? "?")",
                                                               "capabilities": "\(machine.agreedCapabilities)"])
                }
            case .reject(let close):
                try? connection.send(.reject(close))
                return fail("refused primary: \(close.message)")
            case .beginSync:
                applier.enqueue(.beginSync)
            case .applySyncPages(let batch):
                applier.enqueue(.syncPages(batch))
            case .applySyncDiskWrites(let batch):
                applier.enqueue(.syncDiskWrites(batch))
            case .beginCatchUp(let base):
                // The replica stays as it is: committed at `base`, which the state machine checked.
                logger.notice("the primary catches the replica up instead of a full resync", metadata: ["committed-epoch": "\(base)"])
            case .syncComplete(let pages):
                logger.info("initial sync received", metadata: ["pages": "\(pages)"])
                applier.enqueue(.finishSync)
            case .beginEpoch(let epoch):
                staged = StagedEpoch(epoch: epoch)
            case .stagePages(let batch):
                staged?.add(batch)
            case .stageDeviceState(let chunk):
                staged?.add(chunk)
            case .stageDiskWrites(let batch):
                staged?.add(batch)
            case .verified:
                if let whole = staged { applier.enqueue(.commit(whole)) }
                staged = nil
            case .heartbeat(let beat):
                if machine.agreedCapabilities.contains(.heartbeatEcho) { try? connection.send(.heartbeatEcho(beat)) }
            case .heartbeatEcho(let beat):
                configuration.metrics?.heartbeatEchoed(beat)
            case .peerClosed(let close):
                if close.code == .switchover {
                    logger.notice("the primary hands the VM over", metadata: ["reason": "\(close.message)"])
                    events(.handover)
                    return nil
                }
                if close.code == .normal {
                    logger.info("primary ended the session", metadata: ["reason": "\(close.message)"])
                    return nil
                }
                return fail("primary ended the session: \(close.code): \(close.message)")
            case .close(let error):
                try? connection.send(.goodbye(SessionClose(code: error.rejectCode, message: error.description)))
                return fail("protocol error from primary: \(error) (open checkpoint discarded)")
            }
        }
    }

    private func fail(_ reason: String) -> String {
        logger.error("session ended", metadata: ["reason": "\(reason)"])
        return reason
    }
}

/// The per-session apply thread: executes replica work strictly in arrival order and sends the
/// ACK of each checkpoint once its journal is sealed.
final class ReplicaApplier: @unchecked Sendable {
    enum Work: Sendable {
        case beginSync
        case syncPages(PageBatch)
        case syncDiskWrites(DiskWriteBatch)
        case finishSync
        case commit(StagedEpoch)
    }

    private let queue: BlockingQueue<Work>
    private var thread: JoinableThread?
    private let lock = NSLock()
    private var error: String?

    init(store: ReplicaStore, storeLock: NSLock, connection: FrameConnection, decoders: [PageDecoder], depth: Int, logger: Logger,
         completed: @escaping @Sendable (Work) -> Void) {
        let queue = BlockingQueue<Work>(capacity: depth)
        self.queue = queue
        thread = JoinableThread(name: "backup-apply") { [self] in
            while let work = queue.pop() {
                storeLock.lock()
                defer { storeLock.unlock() }
                do {
                    switch work {
                    case .beginSync: try store.beginSync()
                    case .syncPages(let batch): try store.applySyncPages(batch, decoder: decoders[0])
                    case .syncDiskWrites(let batch): try store.applySyncDiskWrites(batch)
                    case .finishSync: try store.finishSync()
                    case .commit(let staged):
                        try store.seal(staged, decoders: decoders)
                        // Sealed: durable against our own crash, so the primary may release its output.
                        // Applied even when the ACK cannot be sent (the link just failed): the
                        // primary may have seen it, and a sealed checkpoint left unapplied would
                        // block every later one, a catch-up's included.
                        let acknowledged = Result { try connection.send(.ack(epoch: staged.epoch)) }
                        try store.applySealed()
                        try acknowledged.get()
                    }
                    completed(work)
                } catch {
                    logger.error("replica apply failed", metadata: ["error": "\(error)"])
                    record("\(error)")
                    queue.close()
                    connection.close()
                    return
                }
            }
        }
    }

    var failure: String? {
        lock.lock()
        defer { lock.unlock() }
        return error
    }

    func enqueue(_ work: Work) { queue.push(work) }

    /// Applies what is queued, then stops the thread.
    func finish() {
        queue.close()
        thread?.join()
        thread = nil
    }

    private func record(_ message: String) {
        lock.lock()
        if error == nil { error = message }
        lock.unlock()
    }
}
