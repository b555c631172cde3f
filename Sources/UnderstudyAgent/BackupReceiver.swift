import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization
import UnderstudyProtocol
import UnderstudyReplica
import UnderstudySystem
import UnderstudyTransport

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
    /// Set by `stop`: ends a back-off after a failed accept.
    private let stopped = Latch()
    /// Accepted connections whose TLS handshake has not ended yet.
    private var handshakes = 0
    /// Takes one connection from the listener; tests put failures in front of it.
    package var acceptConnection: AcceptLoop.Accept
    private var stats = BackupStatistics()
    private let decoders: [PageDecoder]
    /// Held by the apply thread for each piece of replica work, and by `withReplicaPaused`.
    private let storeLock = NSLock()
    /// The guest's input the primary forwarded (input-replay), kept across sessions for a takeover.
    private let guestInput = Mutex(GuestInputLog())

    private let events: @Sendable (BackupEvent) -> Void

    public init(configuration: BackupConfiguration, logger: Logger, events: @escaping @Sendable (BackupEvent) -> Void = { _ in }) throws {
        self.events = events
        self.configuration = configuration
        self.logger = logger
        context = try TLSContext(role: .server, configuration: configuration.tls)
        store = try ReplicaStore(directory: configuration.replicaDirectory, identity: configuration.identity,
                                 diskPaths: configuration.replicaDisks)
        if let recovery = store.recovery { logger.notice("replica recovered", metadata: ["action": "\(recovery)"]) }
        let listener = try TCPListener(endpoint: configuration.listen)
        self.listener = listener
        acceptConnection = { () throws(TransportError) in try listener.accept() }
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

    /// Whether a primary's session is connected now (past its TLS handshake).
    public var isServingPrimary: Bool {
        lock.lock()
        defer { lock.unlock() }
        return activeSession != nil
    }

    /// TLS handshakes in progress at most. Each takes a thread for up to the handshake timeout
    /// (5 s); past this, connections are closed at once, so peers that connect and say nothing
    /// cannot exhaust threads, and the primary gets in again once their handshakes time out.
    public static let maxHandshakes = 4

    /// Accepts connections until `stop`. Each connection gets its own thread; while a session is
    /// active, further primaries are refused as busy. A failed accept (out of descriptors, say) is
    /// logged and retried after a back-off: the backup never stops accepting before `stop`. Call
    /// on a dedicated thread.
    public func serve() {
        var loop = AcceptLoop(accept: acceptConnection)
        loop.run(pause: { stopped.wait(timeout: $0) }) { error, delay in
            logger.error("accept failed, retrying", metadata: ["error": "\(error)", "retry-in": "\(delay)"])
        } handle: { fd, peer in
            guard beginHandshake() else {
                logger.warning("refused a connection: \(Self.maxHandshakes) TLS handshakes are already in progress",
                               metadata: ["peer": "\(peer)"])
                Glibc.close(fd)
                return
            }
            _ = JoinableThread(name: "backup-session") { [self] in
                handshakeAndServe(fd: fd, peer: peer)
            }
        }
    }

    /// Takes a handshake slot; false when all are taken.
    private func beginHandshake() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard handshakes < Self.maxHandshakes else { return false }
        handshakes += 1
        return true
    }

    private func endHandshake() {
        lock.lock()
        handshakes -= 1
        lock.unlock()
    }

    /// Runs `body` between two pieces of replica work: the replica is a whole committed checkpoint
    /// (or not committed at all, see its phase) and nothing writes it meanwhile. Checkpoints keep
    /// arriving and queue up (their ACKs wait), so keep `body` short.
    public func withReplicaPaused<T>(_ body: (ReplicaStore) throws -> T) rethrows -> T {
        storeLock.lock()
        defer { storeLock.unlock() }
        return try body(store)
    }

    /// The frames to give the guest when it is activated from the replica now: what it received on
    /// the primary from the committed checkpoint's epoch on (see `GuestInputLog`).
    public func guestInputToReplay() -> [[UInt8]] {
        let committed = store.state.committedEpoch
        return guestInput.withLock { $0.replay(onto: committed) }
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
        stopped.trigger()
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
        let datagramKey: [UInt8]
        do {
            defer { endHandshake() }
            connection = FrameConnection(stream: try TLSStream.accept(fd: fd, peer: peer, context: context))
            datagramKey = try connection.stream.exportKeyingMaterial(label: HeartbeatDatagram.exporterLabel, length: HeartbeatDatagram.keyLength)
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
        events(.sessionStarted(datagramKey: datagramKey))
        var heartbeats: JoinableThread?
        let sessionOver = Latch()
        let welcomed = Latch()
        if let interval = configuration.heartbeatInterval {
            heartbeats = JoinableThread(name: "backup-heartbeat") {
                // A heartbeat sent late on a busy host reads as a lost backup (`RealtimePriority`).
                RealtimePriority.raiseCurrentThread()
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
                                     depth: configuration.applyQueueDepth, window: PrimaryConfiguration.maximumEpochsInFlight,
                                     logger: logger) { [self] work, timing in
            lock.lock()
            defer { lock.unlock() }
            switch work {
            case .syncPages(let batch): stats.syncPages += batch.entries.count
            case .commit(let staged):
                guestInput.withLock { $0.committed(staged.epoch) }
                stats.checkpointsCommitted += 1
                stats.committedEpoch = staged.epoch
                stats.pagesApplied += staged.pageCount
                if let timing { stats.note(timing) }
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
                guestInput.withLock { $0.removeAll() }
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
                staged = StagedEpoch(epoch: epoch, deviceStateEncoded: machine.agreedCapabilities.contains(.deviceStateDelta))
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
            case .recordGuestInput(let epoch, let frame):
                guestInput.withLock { $0.record(epoch: epoch, frame: frame) }
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
