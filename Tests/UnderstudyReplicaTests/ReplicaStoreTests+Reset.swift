import Foundation
import Testing
import UnderstudyProtocol
import UnderstudyHarness
@testable import UnderstudyReplica

/// A demoted node's replica: reset so that no failover, forced failover or `understudy activate`
/// can start the VM from a history another copy has left, until a full sync commits.
extension ReplicaStoreTests {
    static let superseded = "fenced: node-b claimed the VM in witness term 8 after the term 7 (node-a) this node held last"

    /// A store in `dir` committed at checkpoint `epoch`.
    func committedStore(_ dir: TemporaryDirectory, epoch: UInt64) throws -> ReplicaStore {
        let store = try syncedStore(dir)
        try store.seal(try stage(epoch: epoch, pages: [2]) { _ in 9 }, decoders: [PageDecoder(pageSize: pageSize)])
        try store.applySealed()
        return store
    }

    @Test func aResetReplicaIsNotActivatableAndSaysWhyEvenAfterReopen() throws {
        let dir = try TemporaryDirectory("replica")
        defer { dir.remove() }
        do {
            let store = try committedStore(dir, epoch: 41)
            try store.reset(because: Self.superseded)
            #expect(store.state.phase == .empty)
            #expect(store.state.committedEpoch == 0, "a session's WELCOME must offer nothing to catch up onto")
            let error = #expect(throws: ReplicaError.self) { _ = try store.consumeCommittedCheckpoint() }
            #expect("\(error!)".contains("witness term 8"))
            #expect(throws: ReplicaError.self) { try store.returnConsumedCheckpoint() }
            #expect(throws: ReplicaError.self) {
                try store.seal(try stage(epoch: 42, pages: [3]) { _ in 1 }, decoders: [PageDecoder(pageSize: pageSize)])
            }
        }
        let reopened = try ReplicaStore(directory: dir.path, identity: identity)
        #expect(reopened.state.phase == .empty)
        #expect(reopened.state.resetReason == Self.superseded)
        let refusal = try #require(reopened.state.activationRefusal)
        #expect(refusal.contains("witness term 8") && refusal.contains("full sync"))
    }

    @Test func aFullSyncAfterAResetMakesTheReplicaActivatableAgain() throws {
        let dir = try TemporaryDirectory("replica")
        defer { dir.remove() }
        let store = try committedStore(dir, epoch: 41)
        try store.reset(because: Self.superseded)
        try store.beginSync()
        #expect(store.state.resetReason == nil, "the sync replaces the old history")
        try store.finishSync()
        #expect(store.state.activationRefusal?.contains("synced, not committed") == true)
        try store.seal(try stage(epoch: 1, pages: [4]) { _ in 7 }, decoders: [PageDecoder(pageSize: pageSize)])
        try store.applySealed()
        #expect(store.state.activationRefusal == nil)
        #expect(try store.consumeCommittedCheckpoint().epoch == 1)
    }

    @Test func aResetDropsASealedCheckpointOfTheOldHistory() throws {
        let dir = try TemporaryDirectory("replica")
        defer { dir.remove() }
        do {
            let store = try committedStore(dir, epoch: 41)
            try store.seal(try stage(epoch: 42, pages: [3]) { _ in 1 }, decoders: [PageDecoder(pageSize: pageSize)])
            try store.reset(because: Self.superseded)
        }
        let reopened = try ReplicaStore(directory: dir.path, identity: identity)
        #expect(reopened.recovery == nil, "the journal was sealed on the state before the reset")
        #expect(reopened.state.phase == .empty)
    }

    /// A state file of an earlier layout: one disk size instead of the list (USSTATE3), and
    /// without the reset reason too (USSTATE2).
    func earlierStateFile(_ state: ReplicaState, withResetReason: Bool) -> [UInt8] {
        let identity = state.identity
        var w = WireWriter(capacity: 128)
        w.write(bytes: Array((withResetReason ? "USSTATE3" : "USSTATE2").utf8))
        w.write(state.generation)
        w.write(state.phase.rawValue)
        w.write(state.committedEpoch)
        w.write(string: identity.id)
        w.write(identity.memorySize)
        w.write(identity.pageSize)
        w.write(identity.diskSize)
        w.write(UInt32(state.deviceState.count))
        w.write(bytes: state.deviceState)
        if withResetReason { w.write(string: state.resetReason ?? "") }
        w.write(bytes: EpochDigest.sha256(w.bytes))
        return w.bytes
    }

    @Test func aStateFileWithoutAResetReasonIsStillRead() throws {
        let state = ReplicaState(identity: identity, generation: 5, phase: .committed, committedEpoch: 9, deviceState: [4, 2])
        #expect(try ReplicaState(decoding: earlierStateFile(state, withResetReason: false), path: "state") == state)
        let reset = ReplicaState(identity: identity, generation: 6, resetReason: Self.superseded)
        #expect(try ReplicaState(decoding: reset.encoded(), path: "state") == reset)
    }

    @Test func aStateFileOfOneDiskIsStillReadAndSeveralDisksRoundTrip() throws {
        let oneDisk = VMIdentity(id: "vm-one", memorySize: 1 << 20, diskSize: 1 << 20)
        let state = ReplicaState(identity: oneDisk, generation: 3, phase: .committed, committedEpoch: 7, deviceState: [1], resetReason: Self.superseded)
        #expect(try ReplicaState(decoding: earlierStateFile(state, withResetReason: true), path: "state") == state)
        let noDisk = ReplicaState(identity: VMIdentity(id: "vm-none", memorySize: 1 << 20), generation: 1)
        #expect(try ReplicaState(decoding: earlierStateFile(noDisk, withResetReason: true), path: "state").identity.diskSizes == [])
        let disks = ReplicaState(identity: VMIdentity(id: "vm-two", memorySize: 1 << 20, diskSizes: [512, 1 << 30, 4096]), generation: 2)
        #expect(try ReplicaState(decoding: disks.encoded(), path: "state") == disks)
        #expect(Array(disks.encoded().prefix(8)) == Array("USSTATE4".utf8))
        #expect(state.encoded() == earlierStateFile(state, withResetReason: true),
                "one disk is written as the previous version writes it, so a rollback reads it")
        // A list the previous layout cannot say (one disk of 0 bytes: never valid, but decodable) keeps the new one.
        let zero = ReplicaState(identity: VMIdentity(id: "vm-zero", memorySize: 1 << 20, diskSizes: [0]), generation: 4)
        #expect(try ReplicaState(decoding: zero.encoded(), path: "state") == zero)
    }
}
