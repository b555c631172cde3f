import Foundation
import Testing
import UnderstudyHarness
import UnderstudyProtocol
@testable import UnderstudyReplica

@Suite("Replica fault injection")
struct ReplicaFaultInjectionTests {
    let identity = VMIdentity(id: "vm-faults", memorySize: 256 << 10, diskSize: 64 << 10)
    var pageSize: Int { Int(identity.pageSize) }

    /// Epoch `epoch`'s device state: [epoch]; with `delta`, 4 KiB that differ between epochs in two bytes.
    static func deviceState(_ epoch: UInt64, delta: Bool) -> [UInt8] {
        guard delta else { return [UInt8(epoch)] }
        var state = (0..<4096).map { UInt8(truncatingIfNeeded: ($0 &* 7919) ^ ($0 >> 3)) }
        state[100] = UInt8(epoch)
        state[2000] = UInt8(epoch)
        return state
    }

    /// Epoch `epoch` writes `byte` into `pages`, its device state and `byte` at disk offset `epoch * 4096`.
    /// With `delta` the device state travels as device-state-delta encodes it: epoch 2's as a
    /// delta against epoch 1's, which only the committed epoch 1 decodes right.
    func stage(_ epoch: UInt64, pages: [UInt64], byte: UInt8, delta: Bool) throws -> StagedEpoch {
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
        var staged = StagedEpoch(epoch: epoch, deviceStateEncoded: delta)
        staged.add(try PageBatch(frame: builder.finish(), pageSize: pageSize, pageCount: identity.pageCount))
        let state = Self.deviceState(epoch, delta: delta)
        let encoded = DeviceStateCodec.encode(state, previous: epoch > 1 ? Self.deviceState(epoch - 1, delta: delta) : nil)
        #expect(!delta || epoch == 1 || encoded[0] == PageEncoding.lz4Delta.rawValue)
        staged.add(DeviceStateChunk(epoch: epoch, offset: 0, data: delta ? encoded : state))
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
    func run(failAt: Int, code: Int32, delta: Bool) throws -> Int {
        let dir = try TemporaryDirectory("faults")
        defer { dir.remove() }
        let storage = FailingStorage()
        let store = try ReplicaStore(directory: dir.path, identity: identity, storage: storage)
        try store.beginSync()
        try store.finishSync()
        let decoders = [PageDecoder(pageSize: pageSize)]
        try store.seal(try stage(1, pages: [1, 2], byte: 0x11, delta: delta), decoders: decoders)
        try store.applySealed()

        storage.arm(failAt: failAt, code: code)
        var acknowledged = false
        do {
            try store.seal(try stage(2, pages: [2, 3], byte: 0x22, delta: delta), decoders: decoders)
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
        #expect(checkpoint.deviceState == Self.deviceState(epoch, delta: delta), "\(step)")
        #expect(try bytes(store.memoryPath, at: 2 * pageSize) == (acknowledged ? 0x22 : 0x11), "\(step): memory is epoch \(epoch)'s")
        #expect(try bytes(store.memoryPath, at: 3 * pageSize) == (acknowledged ? 0x22 : 0), "\(step): memory is epoch \(epoch)'s")
        #expect(try bytes(store.diskPaths[0], at: 2 * 4096) == (acknowledged ? 0x22 : 0), "\(step): disk is epoch \(epoch)'s")
        return operations
    }

    /// `delta`: the device state travels as a delta (device-state-delta), decoded at the seal
    /// against the committed state and journaled whole.
    @Test(arguments: [EIO, ENOSPC], [false, true])
    func aFailureAtAnyStepOfSealOrApplyNeverActivatesATornReplica(code: Int32, delta: Bool) throws {
        // With no failure, the count of operations: every one of them is then made to fail.
        let steps = try run(failAt: .max, code: code, delta: delta)
        #expect(steps >= 7, "seal: journal sync; publish: memory, disk, state file, its sync, rename, directory")
        for failAt in 0..<steps { _ = try run(failAt: failAt, code: code, delta: delta) }
    }
}
