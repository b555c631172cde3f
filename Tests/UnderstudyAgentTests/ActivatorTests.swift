import Foundation
import Testing
@testable import UnderstudyAgent
import UnderstudyHarness
import UnderstudyProtocol
import UnderstudyQEMU
@testable import UnderstudyReplica

@Suite("Activator")
struct ActivatorTests {
    /// QEMU cannot start (here: its binary is missing), so it never loaded the checkpoint and
    /// nothing wrote into the memory image: the replica must stay activatable, not be used up.
    @Test func aQEMUThatFailsToStartLeavesTheReplicaActivatable() throws {
        let dir = try TemporaryDirectory("activator")
        defer { dir.remove() }
        for file in ["vmlinuz", "initrd"] { #expect(FileManager.default.createFile(atPath: "\(dir.path)/\(file)", contents: Data())) }
        let description = VMDescription(id: "vm-activator", memoryBytes: 16 << 20, kernel: "\(dir.path)/vmlinuz", initrd: "\(dir.path)/initrd",
                                        runDirectory: "\(dir.path)/run", qemuBinary: "\(dir.path)/no-such-qemu")
        let store = try ReplicaStore(directory: "\(dir.path)/replica", identity: description.identity)
        try store.beginSync()
        try store.finishSync()
        var staged = StagedEpoch(epoch: 4)
        staged.add(DeviceStateChunk(epoch: 4, offset: 0, data: [4, 4]))
        try store.seal(staged, decoders: [PageDecoder(pageSize: Int(description.identity.pageSize))])
        try store.applySealed()

        let error = #expect(throws: (any Error).self) {
            _ = try Activator.activate(store: store, description: description, preloadLibrary: nil, tracking: .compare,
                                       logger: TestGuest.quietLogger) { _ in }
        }
        #expect("\(error!)".contains("no-such-qemu"), "the failure names what is missing: \(error!)")
        #expect(store.state.phase == .committed, "a QEMU that never started used nothing up")
        #expect(store.state.committedEpoch == 4)
        let reopened = try ReplicaState.load(from: store.statePath)
        #expect(reopened?.phase == .committed, "and so says the state file")
        let checkpoint = try store.consumeCommittedCheckpoint()
        #expect(checkpoint.epoch == 4)
        #expect(checkpoint.deviceState == [4, 4])
    }
}
