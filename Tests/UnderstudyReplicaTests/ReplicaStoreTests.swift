import Foundation
import UnderstudySystem
import Synchronization
import UnderstudyHarness
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
        let dir = try TemporaryDirectory("replica")
        defer { dir.remove() }
        let store = try ReplicaStore(directory: dir.path, identity: identity)
        #expect(store.state.phase == .empty)
        #expect(store.state.committedEpoch == 0)
        let size = try FileManager.default.attributesOfItem(atPath: store.memoryPath)[.size] as? Int
        #expect(size == Int(identity.memorySize))
        #expect(store.recovery == nil)
    }

    @Test func commitPublishesPagesDeviceStateAndEpochAndSurvivesReopen() throws {
        let dir = try TemporaryDirectory("replica")
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

    /// A process being started (between its fork and its exec) holds a copy of every descriptor,
    /// the lock's too: a store closed meanwhile must not leave its directory "in use" (CI saw
    /// reopens refused so while other tests started processes).
    @Test func aClosedStoreCanBeReopenedWhileAChildBeingStartedHoldsItsLock() throws {
        let dir = try TemporaryDirectory("replica")
        defer { dir.remove() }
        var copy: OpenFileCopy?
        do {
            let store = try ReplicaStore(directory: dir.path, identity: identity)
            copy = OpenFileCopy(of: "\(dir.path)/lock")
            withExtendedLifetime(store) {}
        }
        defer { copy?.close() }
        #expect(copy != nil, "the lock file is not open")
        _ = try ReplicaStore(directory: dir.path, identity: identity)
    }

    @Test func sealedButUnappliedJournalIsRedoneOnReopen() throws {
        let dir = try TemporaryDirectory("replica")
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

    /// The backup's failover monitor and status read `state` while the apply thread publishes
    /// every checkpoint. A read racing the assignment used to copy the struct while its device
    /// state was released: the heap was corrupted, and the backup crashed in malloc.
    @Test func theStateCanBeReadWhileCheckpointsArePublished() throws {
        // On tmpfs, so that syncs cost nothing and publishes come as fast as the apply thread's.
        let dir = try TemporaryDirectory("replica-race", in: "/dev/shm")
        defer { dir.remove() }
        let store = try syncedStore(dir)
        let publishing = Latch()
        let torn = Mutex(0)
        let readers = (0..<2).map { reader in
            JoinableThread(name: "state-reader-\(reader)") {
                while !publishing.wait(timeout: .zero) {
                    let state = store.state
                    // Every published device state is 256 bytes of one value: a torn copy would show otherwise.
                    if !(state.deviceState.isEmpty || state.deviceState.count == 256 && state.deviceState.allSatisfy { $0 == state.deviceState[0] }) {
                        torn.withLock { $0 += 1 }
                    }
                }
            }
        }
        for epoch in UInt64(1)...3000 {
            try store.seal(try stage(epoch: epoch, pages: [epoch % 8], deviceState: [UInt8](repeating: UInt8(truncatingIfNeeded: epoch), count: 256)) { _ in 1 },
                           decoders: [PageDecoder(pageSize: pageSize)])
            try store.applySealed()
        }
        publishing.trigger()
        for reader in readers { reader.join() }
        #expect(torn.withLock { $0 } == 0)
        #expect(store.state.committedEpoch == 3000)
    }

    @Test func incompleteJournalIsIgnoredOnReopen() throws {
        let dir = try TemporaryDirectory("replica")
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

    @Test func aJournalWhoseBodyDidNotReachStorageIsIgnoredOnReopen() throws {
        let dir = try TemporaryDirectory("replica")
        defer { dir.remove() }
        do {
            let store = try syncedStore(dir)
            try store.seal(try stage(epoch: 1, pages: [3]) { _ in 9 }, decoders: [PageDecoder(pageSize: pageSize)])
            try store.applySealed()
            try store.seal(try stage(epoch: 2, pages: [3]) { _ in 50 }, decoders: [PageDecoder(pageSize: pageSize)])
        }
        // A power cut kept the header and trailer but not the page in between (its old content).
        let journal = FileHandle(forUpdatingAtPath: "\(dir.path)/journal")!
        try journal.seek(toOffset: UInt64(pageSize))
        try journal.write(contentsOf: Data(repeating: 9, count: pageSize))
        try journal.close()
        let reopened = try ReplicaStore(directory: dir.path, identity: identity)
        #expect(reopened.state.committedEpoch == 1, "a torn journal is not a checkpoint")
        #expect(reopened.recovery == nil)
        #expect(try memoryByte(dir.path, page: 3) == 9)
    }

    @Test func aConsumedCheckpointIsGivenBackOnlyWhileNothingElseChanged() throws {
        let dir = try TemporaryDirectory("replica")
        defer { dir.remove() }
        let store = try syncedStore(dir)
        try store.seal(try stage(epoch: 3, pages: [1]) { _ in 5 }, decoders: [PageDecoder(pageSize: pageSize)])
        try store.applySealed()
        _ = try store.consumeCommittedCheckpoint()
        try store.returnConsumedCheckpoint()
        #expect(store.state.phase == .committed)
        #expect(store.state.committedEpoch == 3)
        #expect(store.state.deviceState == [1, 2, 3])
        _ = try store.consumeCommittedCheckpoint()
        try store.beginSync()
        let error = #expect(throws: ReplicaError.self) { try store.returnConsumedCheckpoint() }
        #expect("\(error!)".contains("holds no checkpoint handed out"))
    }

    @Test func duplicatePageInOneEpochIsRefusedAndNothingChanges() throws {
        let dir = try TemporaryDirectory("replica")
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
        let dir = try TemporaryDirectory("replica")
        defer { dir.remove() }
        let store = try ReplicaStore(directory: dir.path, identity: identity)
        #expect(throws: ReplicaError.notReady("checkpoint 1 arrived while the replica is empty")) {
            try store.seal(try stage(epoch: 1, pages: [0]) { _ in 1 }, decoders: [PageDecoder(pageSize: pageSize)])
        }
    }

    @Test func otherVMsReplicaIsRefused() throws {
        let dir = try TemporaryDirectory("replica")
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
        let dir = try TemporaryDirectory("replica")
        defer { dir.remove() }
        let first = try ReplicaStore(directory: dir.path, identity: identity)
        #expect(throws: ReplicaError.locked("replica directory \(dir.path) is in use by another process")) {
            _ = try ReplicaStore(directory: dir.path, identity: identity)
        }
        withExtendedLifetime(first) {}
    }

    @Test func damagedStateFileIsReportedNotIgnored() throws {
        let dir = try TemporaryDirectory("replica")
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

    // MARK: the replica disk

    let diskIdentity = VMIdentity(id: "vm-disk", memorySize: 4 << 20, diskSize: 8 << 20)

    func diskBatch(epoch: UInt64, _ changes: [DiskChange]) throws -> DiskWriteBatch {
        try DiskWriteBatch(frame: DiskWriteBatch.frame(epoch: epoch, changes: changes))
    }

    func diskBytes(_ directory: String, at offset: Int, count: Int) throws -> [UInt8] {
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(directory)/disk.img"))
        return Array(data[offset..<(offset + count)])
    }

    /// A disk store with sync content at 0 (0x11 × 4096) and epoch 1 committed.
    func diskStoreWithOneEpoch(_ dir: TemporaryDirectory) throws -> ReplicaStore {
        let store = try ReplicaStore(directory: dir.path, identity: diskIdentity)
        try store.beginSync()
        try store.applySyncDiskWrites(try diskBatch(epoch: 0, [.write(offset: 0, data: .bytes([UInt8](repeating: 0x11, count: 4096)))]))
        try store.finishSync()
        var staged = StagedEpoch(epoch: 1)
        staged.add(try diskBatch(epoch: 1, [.write(offset: 4096, data: .bytes([UInt8](repeating: 0x22, count: 512))), .flush]))
        try store.seal(staged, decoders: [PageDecoder(pageSize: pageSize)])
        try store.applySealed()
        return store
    }

    @Test func severalDisksEachGetTheirPartOfTheDiskSpaceAndSurviveAReopen() throws {
        let dir = try TemporaryDirectory("replica")
        defer { dir.remove() }
        let identity = VMIdentity(id: "vm-disks", memorySize: 4 << 20, diskSizes: [8192, 16384])
        do {
            let store = try ReplicaStore(directory: dir.path, identity: identity)
            #expect(store.diskPaths == ["\(dir.path)/disk0.img", "\(dir.path)/disk1.img"])
            try store.beginSync()
            try store.finishSync()
            var staged = StagedEpoch(epoch: 1)
            // One write across the boundary, one inside the second disk, and one past the end.
            staged.add(try diskBatch(epoch: 1, [.write(offset: 8190, data: .bytes([1, 2, 3, 4])), .write(offset: 8192 + 100, data: .bytes([7]))]))
            try store.seal(staged, decoders: [PageDecoder(pageSize: pageSize)])
            try store.applySealed()
            var beyond = StagedEpoch(epoch: 2)
            beyond.add(try diskBatch(epoch: 2, [.write(offset: 8192 + 16384 - 1, data: .bytes([1, 2]))]))
            #expect(throws: ReplicaError.self) { try store.seal(beyond, decoders: [PageDecoder(pageSize: pageSize)]) }
        }
        let first = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(dir.path)/disk0.img")))
        let second = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(dir.path)/disk1.img")))
        #expect((first.count, second.count) == (8192, 16384))
        #expect(Array(first[8190...]) == [1, 2])
        #expect(Array(second[0..<2]) == [3, 4])
        #expect(second[100] == 7)
        // Reopened with the disks in another order (same total): another VM, refused.
        let swapped = VMIdentity(id: "vm-disks", memorySize: 4 << 20, diskSizes: [16384, 8192])
        #expect(throws: ReplicaError.self) { _ = try ReplicaStore(directory: dir.path, identity: swapped) }
        let reopened = try ReplicaStore(directory: dir.path, identity: identity)
        #expect(reopened.state.committedEpoch == 1)
    }

    @Test func diskChangesReachTheDiskOnlyWhenTheirEpochIsApplied() throws {
        let dir = try TemporaryDirectory("replica")
        defer { dir.remove() }
        let store = try diskStoreWithOneEpoch(dir)
        #expect(store.diskPaths == ["\(dir.path)/disk.img"])
        let size = try FileManager.default.attributesOfItem(atPath: store.diskPaths[0])[.size] as? Int
        #expect(size == 8 << 20)
        #expect(try diskBytes(dir.path, at: 0, count: 4) == [0x11, 0x11, 0x11, 0x11])
        #expect(try diskBytes(dir.path, at: 4096, count: 512) == [UInt8](repeating: 0x22, count: 512))

        var staged = StagedEpoch(epoch: 2)
        staged.add(try diskBatch(epoch: 2, [
            .write(offset: 100, data: .bytes([1, 2, 3])),
            .write(offset: 0, data: .zeroes(length: 4096)),
            .write(offset: 2, data: .bytes([9])),
        ]))
        try store.seal(staged, decoders: [PageDecoder(pageSize: pageSize)])
        #expect(try diskBytes(dir.path, at: 0, count: 4) == [0x11, 0x11, 0x11, 0x11], "sealing alone must not touch the disk")
        try store.applySealed()
        #expect(try diskBytes(dir.path, at: 0, count: 4) == [0, 0, 9, 0], "changes apply in order")
        #expect(try diskBytes(dir.path, at: 100, count: 3) == [0, 0, 0])
        #expect(store.state.committedEpoch == 2)
    }

    @Test func sealedDiskChangesAreRedoneOnReopen() throws {
        let dir = try TemporaryDirectory("replica")
        defer { dir.remove() }
        do {
            let store = try diskStoreWithOneEpoch(dir)
            var staged = StagedEpoch(epoch: 2)
            staged.add(try diskBatch(epoch: 2, [.write(offset: 8192, data: .bytes([UInt8](repeating: 0x33, count: 3000)))]))
            try store.seal(staged, decoders: [PageDecoder(pageSize: pageSize)])
        }
        #expect(try diskBytes(dir.path, at: 8192, count: 2) == [0, 0])
        let reopened = try ReplicaStore(directory: dir.path, identity: diskIdentity)
        #expect(reopened.state.committedEpoch == 2)
        #expect(try diskBytes(dir.path, at: 8192, count: 3000) == [UInt8](repeating: 0x33, count: 3000))
    }

    @Test func diskChangesBeyondTheDiskOrWithoutADiskAreRefusedAndNothingChanges() throws {
        let dir = try TemporaryDirectory("replica")
        defer { dir.remove() }
        let store = try diskStoreWithOneEpoch(dir)
        var beyond = StagedEpoch(epoch: 2)
        beyond.add(try diskBatch(epoch: 2, [.write(offset: 0, data: .bytes([7])),
                                            .write(offset: (8 << 20) - 1, data: .bytes([1, 2]))]))
        let error = #expect(throws: ReplicaError.self) { try store.seal(beyond, decoders: [PageDecoder(pageSize: pageSize)]) }
        #expect("\(error!)".contains("ends beyond the disks' 8388608 bytes"))
        #expect(store.state.committedEpoch == 1)
        #expect(try diskBytes(dir.path, at: 0, count: 1) == [0x11])

        let memoryOnly = try TemporaryDirectory("replica")
        defer { memoryOnly.remove() }
        let plain = try syncedStore(memoryOnly)
        var staged = StagedEpoch(epoch: 1)
        staged.add(try diskBatch(epoch: 1, [.write(offset: 0, data: .bytes([7]))]))
        let noDisk = #expect(throws: ReplicaError.self) { try plain.seal(staged, decoders: [PageDecoder(pageSize: pageSize)]) }
        #expect("\(noDisk!)".contains("has no replicated disk"))
        #expect(plain.diskPaths.isEmpty)
    }

    @Test func resyncZeroesTheDisk() throws {
        let dir = try TemporaryDirectory("replica")
        defer { dir.remove() }
        let store = try diskStoreWithOneEpoch(dir)
        try store.beginSync()
        #expect(try diskBytes(dir.path, at: 0, count: 4) == [0, 0, 0, 0])
        #expect(throws: ReplicaError.self) {
            try store.applySyncDiskWrites(try diskBatch(epoch: 0, [.write(offset: 8 << 20, data: .bytes([1]))]))
        }
    }

    @Test func aReplicaDiskOfAnotherSizeIsRefusedNotResized() throws {
        let dir = try TemporaryDirectory("replica")
        defer { dir.remove() }
        let disk = "\(dir.path)/provisioned.img"
        #expect(FileManager.default.createFile(atPath: disk, contents: Data(repeating: 7, count: 4096)))
        let error = #expect(throws: ReplicaError.self) { _ = try ReplicaStore(directory: dir.path, identity: diskIdentity, diskPaths: [disk]) }
        #expect("\(error!)".contains("has 4096 bytes, the VM's disk has 8388608"))
        let size = try FileManager.default.attributesOfItem(atPath: disk)[.size] as? Int
        #expect(size == 4096, "the operator's file is left as it was")
    }
}
