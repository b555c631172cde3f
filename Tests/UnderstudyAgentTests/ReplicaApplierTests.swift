import Foundation
import Synchronization
import Testing
@testable import UnderstudyAgent
import UnderstudyProtocol
import UnderstudyReplica
import UnderstudySystem
import UnderstudyTransport

@Suite("ReplicaApplier")
struct ReplicaApplierTests {
    /// The link fails just as a checkpoint is sealed: its ACK cannot go out. The checkpoint is
    /// applied all the same; left sealed and unapplied it would block every later checkpoint
    /// (a catch-up after the link came back was refused forever, found by the WAN bench).
    @Test func aSealedCheckpointIsAppliedEvenWhenItsAckCannotBeSent() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let identity = VMIdentity(id: "vm-applier-test", memorySize: 1 << 20)
        let store = try ReplicaStore(directory: "\(workspace.path)/replica", identity: identity)
        try store.beginSync()
        try store.finishSync()

        let (connection, client) = try Self.closedConnection(workspace)
        defer { client.shutdown() }

        let reported = Mutex<[UInt64]>([])
        let timings = Mutex<[CommitTiming]>([])
        let applier = ReplicaApplier(store: store, storeLock: NSLock(), connection: connection, decoders: [PageDecoder(pageSize: Int(identity.pageSize))],
                                     depth: 4, window: 4, logger: quietLogger) { work, timing in
            if case .commit(let staged) = work { reported.withLock { $0.append(staged.epoch) } }
            if let timing { timings.withLock { $0.append(timing) } }
        }
        var staged = StagedEpoch(epoch: 7)
        staged.add(DeviceStateChunk(epoch: 7, offset: 0, data: [1, 2, 3]))
        applier.enqueue(.commit(staged))
        applier.finish()
        #expect(applier.failure != nil, "the ACK could not be sent: the session fails")
        #expect(store.state.phase == .committed && store.state.committedEpoch == 7, "\(store.state.phase) \(store.state.committedEpoch)")
        #expect(store.state.deviceState == [1, 2, 3])
        // What the store holds is reported (status's committed epoch): a primary that stops closes
        // the link right after its last checkpoint, and status said 227 over a store at 228.
        #expect(reported.withLock { $0 } == [7], "the applied checkpoint was not reported")
        // With its timing: the journal's sync is part of the seal.
        let timing = try #require(timings.withLock { $0 }.first)
        #expect(timing.seal >= timing.journalSync && timing.journalSync > .zero && timing.apply > .zero, "\(timing)")
    }

    /// The session reader hands verified checkpoints to the applier; while the replica's disk is
    /// slow, a primary may have its whole window (`max_epochs_in_flight`, up to 64) in flight. A
    /// reader blocked behind a queue of 8 stops reading heartbeats, and with no UDP path the
    /// backup takes a live primary for lost. Commits up to the window never block the reader.
    @Test func aWindowOfCheckpointsNeverBlocksTheReaderWhileTheReplicaIsSlow() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let identity = VMIdentity(id: "vm-applier-window", memorySize: 1 << 20)
        let store = try ReplicaStore(directory: "\(workspace.path)/replica", identity: identity)
        try store.beginSync()
        try store.finishSync()
        let (connection, client) = try Self.closedConnection(workspace)
        defer { client.shutdown() }

        // The store is busy (a long msync): the apply thread takes the first checkpoint and waits.
        let storeLock = NSLock()
        storeLock.lock()
        let applier = ReplicaApplier(store: store, storeLock: storeLock, connection: connection, decoders: [PageDecoder(pageSize: Int(identity.pageSize))],
                                     depth: 8, window: 32, logger: quietLogger) { _, _ in }
        let handedOver = Latch()
        let reader = JoinableThread(name: "test-reader") {
            for epoch in UInt64(1)...32 { applier.enqueue(.commit(StagedEpoch(epoch: epoch))) }
            handedOver.trigger()
        }
        let returned = handedOver.wait(timeout: .seconds(5))
        storeLock.unlock()
        reader.join()
        applier.finish()
        #expect(returned, "the reader blocked handing over a window of 32 checkpoints to an apply queue of depth 8")
    }

    /// A connection whose peer is gone: an ACK sent on it fails.
    private static func closedConnection(_ workspace: Workspace) throws -> (FrameConnection, TLSStream) {
        let listener = try TCPListener(endpoint: Endpoint(host: "127.0.0.1", port: 0))
        defer { listener.close() }
        let accepted = Mutex<Result<TLSStream, Error>?>(nil)
        let server = JoinableThread(name: "test-accept") {
            let result = Result { () throws -> TLSStream in
                let (fd, peer) = try listener.accept()
                return try TLSStream.accept(fd: fd, peer: peer, context: TLSContext(role: .server, configuration: workspace.tls(node: "backup", peer: "primary")))
            }
            accepted.withLock { $0 = result }
        }
        let client = try TLSStream.connect(to: listener.endpoint, context: TLSContext(role: .client, configuration: workspace.tls(node: "primary", peer: "backup")))
        server.join()
        let connection = FrameConnection(stream: try #require(accepted.withLock { $0 }).get())
        connection.close()
        return (connection, client)
    }
}
