import Foundation
import UnderstudyQEMU
import Synchronization
import Testing
import UnderstudyAgent
import UnderstudyHarness
import UnderstudyProtocol
import UnderstudyReplica
import UnderstudySystem
import UnderstudyTransport

@Suite("Primary to backup replication")
struct ReplicationTests {
    let identity = VMIdentity(id: "vm-agent-test", memorySize: 8 << 20)

    @Test func syntheticGuestReplicatesExactlyOverTLS() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let backup = try RunningBackup(workspace: workspace, identity: identity)
        defer { backup.stop() }
        let guest = SyntheticGuest(identity: identity, pagesPerCheckpoint: 64, mix: [.text, .sparseUpdate, .zero, .random, .binary], seed: 42)
        let primary = PrimaryReplicator(
            source: guest,
            configuration: PrimaryConfiguration(nodeName: "primary", backup: backup.endpoint,
                                                tls: workspace.tls(node: "primary", peer: "backup"), interval: .zero),
            logger: quietLogger)
        defer { primary.stop() }
        try primary.start()
        let sync = primary.statistics
        #expect(sync.syncBytesTotal >= Int(identity.memorySize) && sync.syncBytesDone == sync.syncBytesTotal,
                "sync progress ends complete: \(sync.syncBytesDone) of \(sync.syncBytesTotal) bytes")
        // The guest keeps writing during the pre-copy: those pages must reach the backup too.
        guest.write(pages: 100)
        try primary.runCheckpoints(count: 30)
        try primary.drain(timeout: .seconds(20))
        let stats = primary.statistics
        #expect(stats.checkpointsAcknowledged == 30)
        #expect(stats.lastAcknowledgedEpoch == 30)
        #expect(backup.waitForCommit(30))
        #expect(backup.receiver.store.state.phase == .committed)
        #expect(backup.receiver.store.state.committedEpoch == 30)
        let replica = try Data(contentsOf: URL(fileURLWithPath: backup.receiver.store.memoryPath))
        let equal = replica.withUnsafeBytes { memcmp($0.baseAddress!, guest.memory.baseAddress!, guest.memory.count) == 0 }
        #expect(equal, "replica must equal the guest's memory byte for byte")
        #expect(Array("synthetic device state".utf8).allSatisfy(backup.receiver.store.state.deviceState.contains))
        #expect(stats.encodings[.lz4Delta, default: 0] > 0, "sparse updates must travel as XOR deltas")
        #expect(stats.encodings[.zero, default: 0] > 0)
    }

    /// The session can end while the guest is being captured (the heartbeat thread lost the
    /// backup, the receiving thread saw a protocol error): the checkpoint loop then ends with that
    /// error instead of sending into a closed session (it once crashed on a precondition).
    @Test func aSessionEndingDuringACaptureEndsTheLoopWithAnError() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let backup = try RunningBackup(workspace: workspace, identity: identity)
        defer { backup.stop() }
        let source = SessionEndingSource(SyntheticGuest(identity: identity, pagesPerCheckpoint: 8, mix: [.text]), endingAt: 5)
        let primary = PrimaryReplicator(
            source: source,
            configuration: PrimaryConfiguration(nodeName: "primary", backup: backup.endpoint,
                                                tls: workspace.tls(node: "primary", peer: "backup"), interval: .zero),
            logger: quietLogger)
        source.end = { primary.abandon() }
        try primary.start()
        #expect(throws: TransportError.self) { try primary.runCheckpoints(count: 20) }
        #expect(primary.statistics.checkpointsSent == 4, "checkpoints 1 to 4 went out, 5 was captured after the session ended")
    }

    /// The checkpoint loop holds the source's pause priority from the capture until the
    /// checkpoint is queued (a reply waits for its encoding), and gives it back after the capture
    /// of a large checkpoint, whose encoding would crowd out the guest for long.
    @Test(arguments: [(64, false), (2 * PrimaryReplicator.pagesEncodedAtPausePriority, true)])
    func aCheckpointIsCapturedAndEncodedAtThePausePriorityUnlessLarge(pagesWritten: Int, large: Bool) throws {
        let identity = VMIdentity(id: "vm-agent-test", memorySize: 16 << 20)
        let workspace = try Workspace()
        defer { workspace.remove() }
        let backup = try RunningBackup(workspace: workspace, identity: identity)
        defer { backup.stop() }
        let source = PriorityRecordingSource(SyntheticGuest(identity: identity, pagesPerCheckpoint: pagesWritten, mix: [.text]))
        let primary = PrimaryReplicator(
            source: source,
            configuration: PrimaryConfiguration(nodeName: "primary", backup: backup.endpoint,
                                                tls: workspace.tls(node: "primary", peer: "backup"), interval: .zero),
            logger: quietLogger)
        defer { primary.stop() }
        try primary.start()
        try primary.runCheckpoints(count: 3)
        try primary.drain(timeout: .seconds(20))
        #expect(backup.waitForCommit(3))
        let checkpoints = source.checkpoints.withLock { $0 }
        #expect(checkpoints.count == 3, "each checkpoint runs inside the source's priority: \(checkpoints)")
        for checkpoint in checkpoints {
            #expect(checkpoint.captures == 1 && (checkpoint.pages > PrimaryReplicator.pagesEncodedAtPausePriority) == large)
            #expect(checkpoint.lowered == large, "\(checkpoint)")
        }
    }

    @Test func certificateFromAnotherCAIsRefusedAndTheBackupKeepsServing() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let foreign = "\(workspace.path)/foreign"
        try CertificateAuthority.initialize(directory: foreign, nodes: ["primary", "backup"])
        let backup = try RunningBackup(workspace: workspace, identity: identity)
        defer { backup.stop() }

        let guest = SyntheticGuest(identity: identity, pagesPerCheckpoint: 8, mix: [.text])
        let impostor = PrimaryReplicator(
            source: guest,
            configuration: PrimaryConfiguration(nodeName: "primary", backup: backup.endpoint,
                                                tls: workspace.tls(node: "primary", peer: "backup", certificates: foreign)),
            logger: quietLogger)
        let error = #expect(throws: TransportError.self) { try impostor.start() }
        guard case .handshakeFailed(_, let reason)? = error else {
            Issue.record("expected a handshake failure, got \(String(describing: error))")
            return
        }
        #expect(reason.contains("certificate"), "reason should name the certificate problem: \(reason)")

        let genuine = PrimaryReplicator(
            source: guest,
            configuration: PrimaryConfiguration(nodeName: "primary", backup: backup.endpoint,
                                                tls: workspace.tls(node: "primary", peer: "backup")),
            logger: quietLogger)
        defer { genuine.stop() }
        try genuine.start()
        try genuine.runCheckpoints(count: 2)
        try genuine.drain(timeout: .seconds(10))
        #expect(genuine.statistics.checkpointsAcknowledged == 2)
    }

    @Test func peerWithAnotherNodeNameIsRefused() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let backup = try RunningBackup(workspace: workspace, identity: identity)
        defer { backup.stop() }
        // "intruder" has a certificate from the right CA, but the backup expects "primary".
        let error = #expect(throws: TransportError.self) {
            _ = try ScriptedPrimary(workspace: workspace, endpoint: backup.endpoint, identity: identity, node: "intruder").handshake()
        }
        #expect(error != nil)
    }

    @Test func identityMismatchIsRefusedWithAClearMessage() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let backup = try RunningBackup(workspace: workspace, identity: identity)
        defer { backup.stop() }
        let other = VMIdentity(id: identity.id, memorySize: 16 << 20)
        let primary = PrimaryReplicator(
            source: SyntheticGuest(identity: other, pagesPerCheckpoint: 1, mix: [.zero]),
            configuration: PrimaryConfiguration(nodeName: "primary", backup: backup.endpoint,
                                                tls: workspace.tls(node: "primary", peer: "backup")),
            logger: quietLogger)
        let error = #expect(throws: ProtocolError.self) { try primary.start() }
        guard case .rejected(let code, let message)? = error else {
            Issue.record("expected a rejection, got \(String(describing: error))")
            return
        }
        #expect(code == .identityMismatch)
        #expect(message.contains("memory size is 16777216, expected 8388608"), "\(message)")
    }

    @Test func otherProtocolVersionIsRefused() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let backup = try RunningBackup(workspace: workspace, identity: identity)
        defer { backup.stop() }
        let scripted = try ScriptedPrimary(workspace: workspace, endpoint: backup.endpoint, identity: identity)
        try scripted.send(.hello(Hello(version: 2, identity: identity, nodeName: "future")))
        let reply = try scripted.receive()
        guard case .reject(let close) = reply else {
            Issue.record("expected REJECT, got \(reply)")
            return
        }
        #expect(close.code == .versionMismatch)
        #expect(close.message.contains("version 1") && close.message.contains("version 2"), "\(close.message)")
    }

    @Test func secondPrimaryIsRefusedAsBusy() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let backup = try RunningBackup(workspace: workspace, identity: identity)
        defer { backup.stop() }
        let first = try ScriptedPrimary(workspace: workspace, endpoint: backup.endpoint, identity: identity)
        guard case .welcome = try first.handshake() else {
            Issue.record("first primary not welcomed")
            return
        }
        let second = try ScriptedPrimary(workspace: workspace, endpoint: backup.endpoint, identity: identity)
        guard case .reject(let close) = try second.handshake() else {
            Issue.record("second primary not refused")
            return
        }
        #expect(close.code == .busy)
    }

    @Test func partialCheckpointIsNeverApplied() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let backup = try RunningBackup(workspace: workspace, identity: identity)
        defer { backup.stop() }
        let pageSize = Int(identity.pageSize)
        do {
            let scripted = try ScriptedPrimary(workspace: workspace, endpoint: backup.endpoint, identity: identity)
            guard case .welcome = try scripted.handshake() else { throw ProtocolError.unexpected("no welcome") }
            try scripted.sync(value: 1)
            try scripted.checkpoint(epoch: 1, pages: [10, 11], value: 2)
            #expect(try scripted.receive() == .ack(epoch: 1))
            // Epoch 2 starts, sends pages, and the primary vanishes before CHECKPOINT_END.
            try scripted.send(.checkpointBegin(epoch: 2))
            try scripted.connection.send(try scripted.batch(epoch: 2, pages: [10, 12], value: 3))
        }
        let stats = backup.waitForSessionEnd(sessions: 1)
        #expect(stats.lastSessionError != nil)
        #expect(backup.receiver.store.state.committedEpoch == 1)
        #expect(backup.receiver.store.state.deviceState == [9])
        #expect(try replicaPage(backup.receiver.store, 10, pageSize: pageSize).allSatisfy { $0 == 2 })
        #expect(try replicaPage(backup.receiver.store, 12, pageSize: pageSize).allSatisfy { $0 == 1 })
    }

    @Test func checkpointWithBadChecksumOrCountsIsRefusedAndNotApplied() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let backup = try RunningBackup(workspace: workspace, identity: identity)
        defer { backup.stop() }
        let pageSize = Int(identity.pageSize)
        let tampers: [(String, (inout ContentSummary) -> Void)] = [
            ("checksum", { $0.digest[0] ^= 1 }),
            ("pages", { $0.pageCount += 1 }),
            ("device-state", { $0.deviceStateBytes = 0 }),
        ]
        for (round, (what, tamper)) in tampers.enumerated() {
            let scripted = try ScriptedPrimary(workspace: workspace, endpoint: backup.endpoint, identity: identity)
            guard case .welcome = try scripted.handshake() else { throw ProtocolError.unexpected("no welcome") }
            try scripted.sync(value: 1)
            try scripted.checkpoint(epoch: 1, pages: [5], value: 2)
            #expect(try scripted.receive() == .ack(epoch: 1))
            try scripted.checkpoint(epoch: 2, pages: [5, 6], value: 4, tamper: tamper)
            let reply = try scripted.receive()
            guard case .goodbye(let close) = reply else {
                Issue.record("\(what): expected GOODBYE, got \(reply)")
                continue
            }
            #expect(close.message.contains("verification failed"), "\(what): \(close.message)")
            _ = backup.waitForSessionEnd(sessions: round + 1)
            #expect(backup.receiver.store.state.committedEpoch == 1, "\(what)")
            #expect(try replicaPage(backup.receiver.store, 5, pageSize: pageSize).allSatisfy { $0 == 2 }, "\(what)")
            #expect(try replicaPage(backup.receiver.store, 6, pageSize: pageSize).allSatisfy { $0 == 1 }, "\(what)")
        }
    }

    @Test func unreachableBackupGivesAClearError() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        // Bind and close a listener to get a port nobody listens on.
        let port = try TCPListener(endpoint: Endpoint(host: "127.0.0.1", port: 0)).endpoint.port
        let primary = PrimaryReplicator(
            source: SyntheticGuest(identity: identity, pagesPerCheckpoint: 1, mix: [.zero]),
            configuration: PrimaryConfiguration(nodeName: "primary", backup: Endpoint(host: "127.0.0.1", port: port),
                                                tls: workspace.tls(node: "primary", peer: "backup")),
            logger: quietLogger)
        let error = #expect(throws: TransportError.self) { try primary.start() }
        #expect("\(error!)".contains("cannot connect to 127.0.0.1:\(port)"), "\(error!)")
    }

    /// A capture that fails may already have sealed the epoch's disk writes and output: the
    /// session must end rather than carry on without them.
    @Test func aFailedCaptureEndsTheSession() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let backup = try RunningBackup(workspace: workspace, identity: identity)
        defer { backup.stop() }
        let source = FailingCaptureSource(SyntheticGuest(identity: identity, pagesPerCheckpoint: 16, mix: [.text], seed: 3))
        let primary = PrimaryReplicator(
            source: source,
            configuration: PrimaryConfiguration(nodeName: "primary", backup: backup.endpoint,
                                                tls: workspace.tls(node: "primary", peer: "backup"), interval: .zero),
            logger: quietLogger)
        defer { primary.stop() }
        try primary.start()
        try primary.runCheckpoints(count: 3)
        source.failNext.store(true, ordering: .relaxed)
        #expect(throws: CaptureFailed.self) { try primary.runCheckpoints(count: 1) }
        #expect(throws: CaptureFailed.self, "the session is over: no checkpoint follows a failed capture") {
            try primary.runCheckpoints(count: 1)
        }
        #expect(primary.statistics.checkpointsSent == 3)
    }
}

struct CaptureFailed: Error {}

/// A checkpoint source whose next capture fails on request.
final class FailingCaptureSource: CheckpointSource, @unchecked Sendable {
    let inner: SyntheticGuest
    let failNext = Atomic<Bool>(false)
    init(_ inner: SyntheticGuest) { self.inner = inner }
    var identity: VMIdentity { inner.identity }
    var memory: UnsafeRawBufferPointer { inner.memory }
    func startTracking() throws { try inner.startTracking() }
    func collectDirtyPages() throws -> [UInt64] { try inner.collectDirtyPages() }
    func capture(epoch: UInt64, resume: Bool) throws -> CapturedCheckpoint {
        if failNext.exchange(false, ordering: .relaxed) { throw CaptureFailed() }
        return try inner.capture(epoch: epoch, resume: resume)
    }
}

/// A guest that records how the checkpoint loop uses its pause priority (`withCheckpointPriority`).
private final class PriorityRecordingSource: CheckpointSource, @unchecked Sendable {
    struct Checkpoint {
        /// Captures inside it, and the pages of the last.
        var captures = 0
        var pages = 0
        /// Whether the priority was given back before the checkpoint ended.
        var lowered = false
    }
    private let guest: SyntheticGuest
    let checkpoints = Mutex<[Checkpoint]>([])
    /// The checkpoint being taken (on the checkpoint loop's thread).
    private var current: Checkpoint?

    init(_ guest: SyntheticGuest) { self.guest = guest }

    var identity: VMIdentity { guest.identity }
    var memory: UnsafeRawBufferPointer { guest.memory }
    func startTracking() throws { try guest.startTracking() }
    func collectDirtyPages() throws -> [UInt64] { try guest.collectDirtyPages() }

    func withCheckpointPriority<T>(_ body: (_ lower: () -> Void) throws -> T) rethrows -> T {
        current = Checkpoint()
        defer {
            let taken = current!
            checkpoints.withLock { $0.append(taken) }
            current = nil
        }
        return try body { current!.lowered = true }
    }

    func capture(epoch: UInt64, resume: Bool) throws -> CapturedCheckpoint {
        let captured = try guest.capture(epoch: epoch, resume: resume)
        current?.captures += 1
        current?.pages = captured.pageIndices.count
        return captured
    }
}

/// A guest whose capture of one epoch first ends the replication session (as another thread would).
private final class SessionEndingSource: CheckpointSource, @unchecked Sendable {
    private let guest: SyntheticGuest
    private let endingAt: UInt64
    var end: () -> Void = {}

    init(_ guest: SyntheticGuest, endingAt: UInt64) {
        self.guest = guest
        self.endingAt = endingAt
    }

    var identity: VMIdentity { guest.identity }
    var memory: UnsafeRawBufferPointer { guest.memory }
    func startTracking() throws { try guest.startTracking() }
    func collectDirtyPages() throws -> [UInt64] { try guest.collectDirtyPages() }
    func capture(epoch: UInt64, resume: Bool) throws -> CapturedCheckpoint {
        if epoch == endingAt { end() }
        return try guest.capture(epoch: epoch, resume: resume)
    }
}
