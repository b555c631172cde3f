import Foundation
import Testing
import UnderstudyProtocol
@testable import UnderstudyReplica

@Suite("ReplicaStore")
struct ReplicaStoreTests {
    let identity = VMIdentity(id: "vm-test", memorySize: 4 << 20)
    var pageSize: Int { Int(identity.pageSize) }

    /// Builds a staged epoch that writes `pages` with `content(page)` via the real codec.
    func stage(epoch: UInt64, pages: [UInt64], deviceState: [UInt8] = [1, 2, 3],
               content: (UInt64) -> UInt8) throws -> StagedEpoch {
        let encoder = PageEncoder(pageSize: pageSize, capabilities: [.lz4Pages])
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: 64)
        let base = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: 64)
        defer { scratch.deallocate(); base.deallocate() }
        var builder = PageBatchBuilder(type: .pages, epoch: epoch, capacity: pages.count * encoder.maxEncodedSize)
        for index in pages {
            scratch.initializeMemory(as: UInt8.self, repeating: content(index))
            encoder.append(page: UnsafeRawBufferPointer(scratch), index: index, lastSent: base, to: &builder)
        }
        var staged = StagedEpoch(epoch: epoch)
        staged.add(try PageBatch(frame: builder.finish(), pageSize: pageSize, pageCount: identity.pageCount))
        staged.add(DeviceStateChunk(epoch: epoch, offset: 0, data: deviceState))
        return staged
    }

    /// A store in `dir` that finished an (empty) initial sync, ready for checkpoints.
    func syncedStore(_ dir: TemporaryDirectory) throws -> ReplicaStore {
        let store = try ReplicaStore(directory: dir.path, identity: identity)
        try store.beginSync()
        try store.finishSync()
        return store
    }

    func memoryByte(_ directory: String, page: Int) throws -> UInt8 {
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(directory)/memory.img"))
        return data[page * pageSize + 17]
    }

    @Test func freshStoreIsEmptyAndSizedToTheVM() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let store = try ReplicaStore(directory: dir.path, identity: identity)
        #expect(store.state.phase == .empty)
        #expect(store.state.committedEpoch == 0)
        let size = try FileManager.default.attributesOfItem(atPath: store.memoryPath)[.size] as? Int
        #expect(size == Int(identity.memorySize))
        #expect(store.recovery == nil)
    }

    @Test func commitPublishesPagesDeviceStateAndEpochAndSurvivesReopen() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        do {
            let store = try syncedStore(dir)
            try store.seal(try stage(epoch: 7, pages: [0, 5, 1023]) { UInt8($0 % 200) + 1 }, decoders: [PageDecoder(pageSize: pageSize)])
            #expect(store.state.committedEpoch == 0, "sealing alone must not publish")
            try store.applySealed()
            #expect(store.state.phase == .committed)
            #expect(store.state.committedEpoch == 7)
            #expect(store.state.deviceState == [1, 2, 3])
        }
        let reopened = try ReplicaStore(directory: dir.path, identity: identity)
        #expect(reopened.state.committedEpoch == 7)
        #expect(reopened.state.deviceState == [1, 2, 3])
        #expect(reopened.recovery == nil, "a finished apply leaves nothing to recover")
        #expect(try memoryByte(dir.path, page: 5) == 6)
        #expect(try memoryByte(dir.path, page: 1023) == UInt8(1023 % 200) + 1)
        #expect(try memoryByte(dir.path, page: 1) == 0)
    }

    @Test func sealedButUnappliedJournalIsRedoneOnReopen() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        do {
            let store = try syncedStore(dir)
            try store.seal(try stage(epoch: 1, pages: [3]) { _ in 9 }, decoders: [PageDecoder(pageSize: pageSize)])
            try store.applySealed()
            // Seal epoch 2 and "crash" before applying it.
            try store.seal(try stage(epoch: 2, pages: [3, 4], deviceState: [42]) { _ in 77 }, decoders: [PageDecoder(pageSize: pageSize)])
        }
        #expect(try memoryByte(dir.path, page: 3) == 9, "memory is untouched until the apply")
        // As if the killed process had copied one of the two pages already: replay must be idempotent.
        let memory = FileHandle(forUpdatingAtPath: "\(dir.path)/memory.img")!
        try memory.seek(toOffset: UInt64(4 * pageSize))
        try memory.write(contentsOf: Data(repeating: 77, count: pageSize))
        try memory.close()
        let reopened = try ReplicaStore(directory: dir.path, identity: identity)
        #expect(reopened.state.committedEpoch == 2)
        #expect(reopened.state.deviceState == [42])
        #expect(reopened.recovery?.contains("checkpoint 2") == true)
        #expect(try memoryByte(dir.path, page: 3) == 77)
        #expect(try memoryByte(dir.path, page: 4) == 77)
    }

    @Test func incompleteJournalIsIgnoredOnReopen() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        do {
            let store = try syncedStore(dir)
            try store.seal(try stage(epoch: 1, pages: [3]) { _ in 9 }, decoders: [PageDecoder(pageSize: pageSize)])
            try store.applySealed()
            try store.seal(try stage(epoch: 2, pages: [3]) { _ in 50 }, decoders: [PageDecoder(pageSize: pageSize)])
        }
        // Tear the trailer: the journal no longer counts as sealed.
        let journal = FileHandle(forUpdatingAtPath: "\(dir.path)/journal")!
        let end = try journal.seekToEnd()
        try journal.seek(toOffset: end - 8)
        try journal.write(contentsOf: Data(repeating: 0, count: 8))
        try journal.close()
        let reopened = try ReplicaStore(directory: dir.path, identity: identity)
        #expect(reopened.state.committedEpoch == 1)
        #expect(reopened.recovery == nil)
        #expect(try memoryByte(dir.path, page: 3) == 9)
    }

    @Test func duplicatePageInOneEpochIsRefusedAndNothingChanges() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let store = try syncedStore(dir)
        #expect(throws: ReplicaError.self) {
            try store.seal(try stage(epoch: 1, pages: [8, 8]) { _ in 1 }, decoders: [PageDecoder(pageSize: pageSize)])
        }
        #expect(store.state.phase == .synced)
        #expect(store.state.committedEpoch == 0)
        // The failed seal leaves the store usable.
        try store.seal(try stage(epoch: 1, pages: [8]) { _ in 1 }, decoders: [PageDecoder(pageSize: pageSize)])
        try store.applySealed()
        #expect(store.state.committedEpoch == 1)
    }

    @Test func checkpointsBeforeSyncAreRefused() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let store = try ReplicaStore(directory: dir.path, identity: identity)
        #expect(throws: ReplicaError.notReady("checkpoint 1 arrived while the replica is empty")) {
            try store.seal(try stage(epoch: 1, pages: [0]) { _ in 1 }, decoders: [PageDecoder(pageSize: pageSize)])
        }
    }

    @Test func otherVMsReplicaIsRefused() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        do {
            let store = try ReplicaStore(directory: dir.path, identity: identity)
            try store.beginSync()
        }
        let error = #expect(throws: ReplicaError.self) {
            _ = try ReplicaStore(directory: dir.path, identity: VMIdentity(id: "other", memorySize: 4 << 20))
        }
        #expect("\(error!)".contains("belongs to VM vm-test"))
    }

    @Test func secondOpenOfTheSameDirectoryIsRefused() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let first = try ReplicaStore(directory: dir.path, identity: identity)
        #expect(throws: ReplicaError.locked("replica directory \(dir.path) is in use by another process")) {
            _ = try ReplicaStore(directory: dir.path, identity: identity)
        }
        withExtendedLifetime(first) {}
    }

    @Test func damagedStateFileIsReportedNotIgnored() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        do {
            let store = try ReplicaStore(directory: dir.path, identity: identity)
            try store.beginSync()
        }
        var bytes = try Data(contentsOf: URL(fileURLWithPath: "\(dir.path)/state"))
        bytes[12] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: "\(dir.path)/state"))
        let error = #expect(throws: ReplicaError.self) { _ = try ReplicaStore(directory: dir.path, identity: identity) }
        #expect("\(error!)".contains("checksum"))
    }
}
