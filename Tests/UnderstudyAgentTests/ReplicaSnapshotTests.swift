import Foundation
import Testing
@testable import UnderstudyAgent
import UnderstudyHarness
import UnderstudyProtocol
import UnderstudyReplica

@Suite("ReplicaSnapshot")
struct ReplicaSnapshotTests {
    let identity = VMIdentity(id: "vm-snapshot", memorySize: 256 << 10)
    var pageSize: Int { Int(identity.pageSize) }

    func stage(_ epoch: UInt64, page: UInt64, byte: UInt8) throws -> StagedEpoch {
        let encoder = PageEncoder(pageSize: pageSize, capabilities: [.lz4Pages])
        var builder = PageBatchBuilder(type: .pages, epoch: epoch, capacity: encoder.maxEncodedSize)
        var lastSent = [UInt8](repeating: 0, count: pageSize)
        [UInt8](repeating: byte, count: pageSize).withUnsafeBytes { current in
            lastSent.withUnsafeMutableBytes { encoder.append(page: current, index: page, lastSent: $0, to: &builder) }
        }
        var staged = StagedEpoch(epoch: epoch)
        staged.add(try PageBatch(frame: builder.finish(), pageSize: pageSize, pageCount: identity.pageCount))
        staged.add(DeviceStateChunk(epoch: epoch, offset: 0, data: [UInt8(epoch)]))
        return staged
    }

    /// An apply that failed after the ACK left epoch 2's page in memory under epoch 1's state: a
    /// drill's snapshot must not copy that mix. It finishes the apply first, or refuses.
    @Test func aSnapshotAfterAFailedApplyIsOneEpochOrNothing() throws {
        let dir = try TemporaryDirectory("snapshot")
        defer { dir.remove() }
        let storage = FailingMemorySyncStorage()
        let store = try ReplicaStore(directory: "\(dir.path)/replica", identity: identity, storage: storage)
        try store.beginSync()
        try store.finishSync()
        let decoders = [PageDecoder(pageSize: pageSize)]
        try store.seal(try stage(1, page: 5, byte: 0x11), decoders: decoders)
        try store.applySealed()
        storage.failing = true
        try store.seal(try stage(2, page: 5, byte: 0x22), decoders: decoders)
        #expect(throws: ReplicaError.self) { try store.applySealed() }

        let refused = #expect(throws: ReplicaError.self) { _ = try ReplicaSnapshot.take(of: store, into: "\(dir.path)/refused") }
        #expect(refused.map { "\($0)" }?.contains("Input/output error") == true, "the refusal names the failure")
        #expect(!FileManager.default.fileExists(atPath: "\(dir.path)/refused"), "nothing copied")

        storage.failing = false
        let snapshot = try ReplicaSnapshot.take(of: store, into: "\(dir.path)/taken")
        #expect(snapshot.epoch == 2)
        #expect(try snapshot.deviceState() == [2])
        let memory = try Data(contentsOf: URL(fileURLWithPath: snapshot.memoryPath))
        #expect(memory[5 * pageSize] == 0x22)
    }
}
