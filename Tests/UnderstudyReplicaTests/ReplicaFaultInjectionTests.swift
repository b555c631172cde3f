import Foundation
import Testing
import UnderstudyHarness
import UnderstudyProtocol
@testable import UnderstudyReplica

@Suite("Replica fault injection")
struct ReplicaFaultInjectionTests {
    let identity = VMIdentity(id: "vm-faults", memorySize: 256 << 10, diskSize: 64 << 10)
    var pageSize: Int { Int(identity.pageSize) }

    /// Epoch `epoch` writes `byte` into `pages`, device state [epoch] and `byte` at disk offset `epoch * 4096`.
    func stage(_ epoch: UInt64, pages: [UInt64], byte: UInt8) throws -> StagedEpoch {
        let encoder = PageEncoder(pageSize: pageSize, capabilities: [.lz4Pages])
        var builder = PageBatchBuilder(type: .pages, epoch: epoch, capacity: pages.count * encoder.maxEncodedSize)
        // Every page this test writes is whole (sent without a base): the replica's content
        // before the epoch does not matter to the decode.
        var lastSent = [UInt8](repeating: 0, count: pageSize)
        let page = [UInt8](repeating: byte, count: pageSize)
        for index in pages {
            page.withUnsafeBytes { current in
                lastSent.withUnsafeMutableBytes { encoder.append(page: current, index: index, lastSent: $0, to: &builder) }
            }
            lastSent = [UInt8](repeating: 0, count: pageSize)
        }
        var staged = StagedEpoch(epoch: epoch)
        staged.add(try PageBatch(frame: builder.finish(), pageSize: pageSize, pageCount: identity.pageCount))
        staged.add(DeviceStateChunk(epoch: epoch, offset: 0, data: [UInt8(epoch)]))
        staged.add(try DiskWriteBatch(frame: DiskWriteBatch.frame(epoch: epoch, changes: [
            .write(offset: epoch * 4096, data: .bytes([UInt8](repeating: byte, count: 512)))])))
        return staged
    }

    func bytes(_ path: String, at offset: Int) throws -> UInt8 {
        Array(try Data(contentsOf: URL(fileURLWithPath: path)))[offset]
    }

    /// Epoch 1 committed (pages 1, 2 = 0x11), then epoch 2 (pages 2, 3 = 0x22) with its storage
    /// failing from operation `failAt` on; then an activation, first while storage still fails,
    /// then after it healed. The activation must get the epoch that was acknowledged, whole.
    func run(failAt: Int, code: Int32) throws -> Int {
        let dir = try TemporaryDirectory("faults")
        defer { dir.remove() }
        let storage = FailingStorage()
        let store = try ReplicaStore(directory: dir.path, identity: identity, storage: storage)
        try store.beginSync()
        try store.finishSync()
        let decoders = [PageDecoder(pageSize: pageSize)]
        try store.seal(try stage(1, pages: [1, 2], byte: 0x11), decoders: decoders)
        try store.applySealed()

        storage.arm(failAt: failAt, code: code)
        var acknowledged = false
        do {
            try store.seal(try stage(2, pages: [2, 3], byte: 0x22), decoders: decoders)
            acknowledged = true
            try store.applySealed()
        } catch {
            #expect("\(error)".contains(String(cString: strerror(code))), "the failure names its cause: \(error)")
        }
        let operations = storage.operations
        if storage.operations > failAt {
            let refused = #expect(throws: ReplicaError.self, "no activation while the replica cannot be made whole") {
                _ = try store.consumeCommittedCheckpoint()
            }
            #expect("\(refused!)".contains(String(cString: strerror(code))))
        }
        storage.heal()
        let checkpoint = try store.consumeCommittedCheckpoint()
        let epoch: UInt64 = acknowledged ? 2 : 1
        let step = "failure at operation \(failAt) (\(String(cString: strerror(code))))"
        #expect(checkpoint.epoch == epoch, "\(step): epoch \(epoch) expected")
        #expect(checkpoint.deviceState == [UInt8(epoch)], "\(step)")
        #expect(try bytes(store.memoryPath, at: 2 * pageSize) == (acknowledged ? 0x22 : 0x11), "\(step): memory is epoch \(epoch)'s")
        #expect(try bytes(store.memoryPath, at: 3 * pageSize) == (acknowledged ? 0x22 : 0), "\(step): memory is epoch \(epoch)'s")
        #expect(try bytes(store.diskPath!, at: 2 * 4096) == (acknowledged ? 0x22 : 0), "\(step): disk is epoch \(epoch)'s")
        return operations
    }

    @Test(arguments: [EIO, ENOSPC])
    func aFailureAtAnyStepOfSealOrApplyNeverActivatesATornReplica(code: Int32) throws {
        // With no failure, the count of operations: every one of them is then made to fail.
        let steps = try run(failAt: .max, code: code)
        #expect(steps >= 7, "seal: journal sync; publish: memory, disk, state file, its sync, rename, directory")
        for failAt in 0..<steps { _ = try run(failAt: failAt, code: code) }
    }
}
