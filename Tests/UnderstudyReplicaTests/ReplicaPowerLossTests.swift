import Foundation
import Testing
import UnderstudyHarness
import UnderstudyProtocol
@testable import UnderstudyReplica

@Suite("Replica power loss")
struct ReplicaPowerLossTests {
    static let identity = VMIdentity(id: "vm-power", memorySize: 256 << 10, diskSize: 64 << 10)
    static let epochs: UInt64 = 3
    var pageSize: Int { Int(Self.identity.pageSize) }

    /// The replica as a committed epoch leaves it.
    struct Expected {
        var memory: [UInt8]
        var disk: [UInt8]
        var deviceState: [UInt8]
    }

    /// Epoch `epoch`: three pages (one rewritten every epoch), a disk write, a flush in epoch 2.
    func pages(_ epoch: UInt64) -> [UInt64] { [epoch, 20 + epoch, 40] }
    func pageByte(_ epoch: UInt64, _ page: UInt64) -> UInt8 { UInt8(epoch * 16 + page % 13 + 1) }
    func diskChanges(_ epoch: UInt64) -> [DiskChange] {
        let write = DiskChange.write(offset: epoch * 4096 + 100, data: .bytes([UInt8](repeating: UInt8(epoch + 0x40), count: 700)))
        return epoch == 2 ? [write, .flush] : [write]
    }

    func stage(_ epoch: UInt64, on model: inout Expected) throws -> StagedEpoch {
        let encoder = PageEncoder(pageSize: pageSize, capabilities: [.lz4Pages])
        var builder = PageBatchBuilder(type: .pages, epoch: epoch, capacity: 3 * encoder.maxEncodedSize)
        for index in pages(epoch) {
            let range = Int(index) * pageSize..<(Int(index) + 1) * pageSize
            let page = [UInt8](repeating: pageByte(epoch, index), count: pageSize)
            var lastSent = Array(model.memory[range])
            page.withUnsafeBytes { current in
                lastSent.withUnsafeMutableBytes { encoder.append(page: current, index: index, lastSent: $0, to: &builder) }
            }
            model.memory.replaceSubrange(range, with: page)
        }
        var staged = StagedEpoch(epoch: epoch)
        staged.add(try PageBatch(frame: builder.finish(), pageSize: pageSize, pageCount: Self.identity.pageCount))
        staged.add(DeviceStateChunk(epoch: epoch, offset: 0, data: [UInt8(epoch), 0xDE]))
        staged.add(try DiskWriteBatch(frame: DiskWriteBatch.frame(epoch: epoch, changes: diskChanges(epoch))))
        for case .write(let offset, .bytes(let bytes)) in diskChanges(epoch) {
            model.disk.replaceSubrange(Int(offset)..<Int(offset) + bytes.count, with: bytes)
        }
        model.deviceState = [UInt8(epoch), 0xDE]
        return staged
    }

    /// Makes a synced replica in `dir` (its disk written by the sync), all of it durable; returns it.
    func sync(_ dir: TemporaryDirectory) throws -> Expected {
        let store = try ReplicaStore(directory: dir.path, identity: Self.identity)
        try store.beginSync()
        try store.applySyncDiskWrites(try DiskWriteBatch(frame: DiskWriteBatch.frame(epoch: 0, changes: [
            .write(offset: 0, data: .bytes([UInt8](repeating: 0x11, count: 64 << 10)))])))
        try store.finishSync()
        return Expected(memory: [UInt8](repeating: 0, count: Int(Self.identity.memorySize)),
                        disk: [UInt8](repeating: 0x11, count: 64 << 10), deviceState: [])
    }

    /// Runs the epochs on a synced replica, the power cut at operation `crashAt`; returns the
    /// storage and what every committed epoch must look like (index 0: the initial sync).
    func run(crashAt: Int?) throws -> (PowerCutStorage, [Expected]) {
        let dir = try TemporaryDirectory("power")
        defer { dir.remove() }
        var model = try sync(dir)
        var expected = [model]
        let storage = PowerCutStorage(directory: dir.path, crashAt: crashAt)
        let store = try ReplicaStore(directory: dir.path, identity: Self.identity, storage: storage)
        for epoch in 1...Self.epochs {
            let staged = try stage(epoch, on: &model)
            try store.seal(staged, decoders: [PageDecoder(pageSize: pageSize)])
            storage.acknowledged = epoch
            try store.applySealed()
            expected.append(model)
        }
        storage.finish()
        return (storage, expected)
    }

    /// Recovers one directory a power cut left and checks it is exactly one committed epoch,
    /// whole, and not older than the last acknowledged one.
    func recover(_ files: [String: [UInt8]], acknowledged: UInt64, expected: [Expected], crashAt: Int) throws {
        let dir = try TemporaryDirectory("recovered")
        defer { dir.remove() }
        for (name, content) in files { #expect(FileManager.default.createFile(atPath: "\(dir.path)/\(name)", contents: Data(content))) }
        let store: ReplicaStore
        do {
            store = try ReplicaStore(directory: dir.path, identity: Self.identity)
        } catch {
            Issue.record("cut at operation \(crashAt): the replica does not open: \(error)")
            return
        }
        let epoch = store.state.committedEpoch
        #expect(store.state.phase == (epoch == 0 ? .synced : .committed), "cut at operation \(crashAt)")
        #expect(epoch >= acknowledged, "cut at operation \(crashAt): epoch \(acknowledged) was acknowledged, the replica is at \(epoch)")
        guard epoch < expected.count else { Issue.record("cut at operation \(crashAt): epoch \(epoch) was never sent"); return }
        let want = expected[Int(epoch)]
        let memory = Array(FileManager.default.contents(atPath: store.memoryPath)!)
        let disk = Array(FileManager.default.contents(atPath: store.diskPaths[0])!)
        // Compared as a Bool: a failure names the first differing byte, not two whole images.
        let memoryDiffers = memory.indices.first { memory[$0] != want.memory[$0] }
        let diskDiffers = disk.indices.first { disk[$0] != want.disk[$0] }
        #expect(memoryDiffers == nil, "cut at operation \(crashAt): the memory image is not epoch \(epoch)'s")
        #expect(diskDiffers == nil, "cut at operation \(crashAt): the disk image is not epoch \(epoch)'s")
        if epoch > 0 { #expect(store.state.deviceState == want.deviceState, "cut at operation \(crashAt)") }
    }

    @Test func aPowerCutAtAnyOperationLeavesExactlyOneCommittedEpochWhole() throws {
        let (complete, _) = try run(crashAt: nil)
        #expect(complete.operations > 3 * Int(Self.epochs))
        var directories = 0
        for crashAt in 0...complete.operations {
            let (storage, expected) = try run(crashAt: crashAt)
            let image = try #require(storage.image)
            for files in image.directories {
                try recover(files, acknowledged: image.acknowledged, expected: expected, crashAt: crashAt)
            }
            directories += image.directories.count
        }
        #expect(directories > complete.operations)
    }

    /// A demoted node's reset of its replica, committed at epoch 1, the power cut at operation
    /// `crashAt`; returns the storage and the replica as the sync and epoch 1 left it.
    func runReset(crashAt: Int?) throws -> (PowerCutStorage, [Expected]) {
        let dir = try TemporaryDirectory("power")
        defer { dir.remove() }
        var model = try sync(dir)
        var expected = [model]
        do {
            let store = try ReplicaStore(directory: dir.path, identity: Self.identity)
            try store.seal(try stage(1, on: &model), decoders: [PageDecoder(pageSize: pageSize)])
            try store.applySealed()
        }
        expected.append(model)
        let storage = PowerCutStorage(directory: dir.path, crashAt: crashAt)
        storage.acknowledged = 1
        let store = try ReplicaStore(directory: dir.path, identity: Self.identity, storage: storage)
        try store.reset(because: "fenced: witness term 8")
        storage.finish()
        return (storage, expected)
    }

    @Test func aPowerCutDuringAResetLeavesTheOldReplicaWholeOrTheResetOne() throws {
        let (complete, _) = try runReset(crashAt: nil)
        var resets = 0
        for crashAt in 0...complete.operations {
            let (storage, expected) = try runReset(crashAt: crashAt)
            let image = try #require(storage.image)
            for files in image.directories {
                let state = try ReplicaState(decoding: try #require(files["state"]), path: "state")
                if state.phase == .empty {
                    #expect(state.activationRefusal?.contains("witness term 8") == true, "cut at operation \(crashAt)")
                    resets += 1
                } else {
                    // The reset did not reach storage: the role record still says primary, so
                    // the node's next start resets again; until then the replica must be whole.
                    try recover(files, acknowledged: 1, expected: expected, crashAt: crashAt)
                }
            }
        }
        #expect(resets > 0)
    }
}
