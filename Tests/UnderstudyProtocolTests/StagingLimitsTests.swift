import Testing
@testable import UnderstudyProtocol

/// What one checkpoint may make the backup stage: every bound closes the session with a clear
/// reason on the frame that passes it, before the frame is staged.
@Suite("Staging limits")
struct StagingLimitsTests {
    static let identity = Fixtures.identity

    /// A PAGES frame of zero pages at `indices` (a zero page carries no bytes).
    static func zeroPages(epoch: UInt64, _ indices: [UInt64]) -> Frame {
        rawFrame(.pages) { w in
            w.write(epoch)
            w.write(UInt32(indices.count))
            for index in indices {
                w.write(index)
                w.write(PageEncoding.zero.rawValue)
            }
        }
    }

    @Test("a page twice in one checkpoint closes the session, within one batch or across two")
    func duplicatePages() {
        var backup = BackupSessionStateMachineTests.receiving(epoch: 1)
        #expect(backup.received(Self.zeroPages(epoch: 1, [3, 4])).isStaged)
        let again = backup.received(Self.zeroPages(epoch: 1, [5, 3]))
        BackupSessionStateMachineTests.expectClose(again, "unexpected", containing: "checkpoint 1 carries page 3 twice", backup)

        var single = BackupSessionStateMachineTests.receiving(epoch: 1)
        let twice = single.received(Self.zeroPages(epoch: 1, [7, 7]))
        BackupSessionStateMachineTests.expectClose(twice, "unexpected", containing: "page 7 twice", single)
    }

    @Test("the same page in consecutive checkpoints is no duplicate")
    func samePageNextCheckpoint() {
        var backup = BackupSessionStateMachineTests.receiving(epoch: 1)
        for epoch: UInt64 in 1...3 {
            if epoch > 1 { #expect(backup.received(Message.checkpointBegin(epoch: epoch).frame) == .beginEpoch(epoch)) }
            let frame = Self.zeroPages(epoch: epoch, [0, 63])
            #expect(backup.received(frame).isStaged)
            let end = ContentSummary(epoch: epoch, pageCount: 2, digest: Fixtures.digest([frame]))
            #expect(backup.received(Message.checkpointEnd(end).frame) == .verified(epoch: epoch))
        }
    }

    @Test("a checkpoint carries at most the guest's pages")
    func pagesAtMostTheGuests() {
        var backup = BackupSessionStateMachineTests.receiving(epoch: 1)
        let all = Array(0..<Self.identity.pageCount)
        #expect(backup.received(Self.zeroPages(epoch: 1, all)).isStaged)
        let more = backup.received(Self.zeroPages(epoch: 1, [0]))
        BackupSessionStateMachineTests.expectClose(more, "malformed", containing: "more than the guest's 64 pages", backup)
    }

    @Test("device state is capped at 64 MiB per checkpoint")
    func deviceStateCap() {
        let limit = 64 << 20
        var backup = BackupSessionStateMachineTests.receiving(epoch: 1)
        let chunkSize = 4 << 20 - 64
        var offset = 0
        while offset < limit {
            let size = min(chunkSize, limit - offset)
            let chunk = DeviceStateChunk(epoch: 1, offset: UInt64(offset), data: [UInt8](repeating: 0xA5, count: size))
            #expect(backup.received(Message.deviceState(chunk).frame).isStaged)
            offset += size
        }
        let over = backup.received(Message.deviceState(DeviceStateChunk(epoch: 1, offset: UInt64(limit), data: [1])).frame)
        BackupSessionStateMachineTests.expectClose(over, "malformed", containing: "more than \(limit) bytes of device state", backup)
    }

    @Test("decompressed disk data is capped at 1 GiB per checkpoint")
    func diskBytesCap() throws {
        // One 4 MiB write of a repeated byte compresses to about 16 KiB: 256 of them reach the cap cheaply.
        let write = DiskWriteBatch.frame(epoch: 1, changes: [.write(offset: 0, data: .bytes([UInt8](repeating: 7, count: 4 << 20)))])
        #expect(write.bytes.count < 64 << 10)
        var backup = BackupSessionStateMachineTests.receiving(epoch: 1)
        for _ in 0..<256 { #expect(backup.received(write).isStaged) }
        let over = backup.received(DiskWriteBatch.frame(epoch: 1, changes: [.write(offset: 0, data: .bytes([1]))]))
        BackupSessionStateMachineTests.expectClose(over, "malformed", containing: "more than \(1 << 30) bytes of disk data", backup)
    }

    @Test("zeroed ranges carry no data: they count as disk changes, capped at 4 Mi per checkpoint")
    func diskWritesCap() {
        let zeroes = DiskWriteBatch.frame(epoch: 1, changes: Array(repeating: .write(offset: 0, data: .zeroes(length: 1 << 30)),
                                                                   count: DiskWriteBatch.maxEntries))
        var backup = BackupSessionStateMachineTests.receiving(epoch: 1)
        for _ in 0..<((1 << 22) / DiskWriteBatch.maxEntries) { #expect(backup.received(zeroes).isStaged) }
        let over = backup.received(DiskWriteBatch.frame(epoch: 1, changes: [.flush]))
        BackupSessionStateMachineTests.expectClose(over, "malformed", containing: "more than \(1 << 22) disk changes", backup)
    }

    @Test("the catch-up checkpoint replays an outage's disk changes: its own, larger bounds apply, and only to it")
    func catchUpDiskBounds() {
        let limits = StagingLimits(diskBytes: 8, diskWrites: 2, catchUpDiskBytes: 16, catchUpDiskWrites: 4)
        func backup() -> BackupSessionStateMachine {
            var backup = BackupSessionStateMachine(identity: Self.identity, committedEpoch: 40, limits: limits)
            _ = backup.received(Fixtures.hello())
            return backup
        }
        func write(_ epoch: UInt64) -> Frame {
            DiskWriteBatch.frame(epoch: epoch, changes: [.write(offset: 0, data: .bytes([1, 2, 3, 4]))])
        }
        var catchingUp = backup()
        #expect(catchingUp.received(Message.catchUpBegin(baseEpoch: 40).frame) == .beginCatchUp(baseEpoch: 40))
        #expect(catchingUp.received(Message.checkpointBegin(epoch: 45).frame) == .beginEpoch(45))
        for _ in 0..<4 { #expect(catchingUp.received(write(45)).isStaged, "more than a checkpoint's 2 changes and 8 bytes") }
        BackupSessionStateMachineTests.expectClose(catchingUp.received(write(45)), "malformed", containing: "more than 4 disk changes",
                                                   catchingUp)

        var regular = backup()
        #expect(regular.received(Message.syncBegin(SyncBegin(pageCount: 0)).frame) == .beginSync(SyncBegin(pageCount: 0)))
        #expect(regular.received(Message.syncEnd(ContentSummary(epoch: 0, pageCount: 0, digest: Fixtures.digest([]))).frame)
                == .syncComplete(pages: 0))
        #expect(regular.received(Message.checkpointBegin(epoch: 1).frame) == .beginEpoch(1))
        for _ in 0..<2 { #expect(regular.received(write(1)).isStaged) }
        BackupSessionStateMachineTests.expectClose(regular.received(write(1)), "malformed", containing: "more than 2 disk changes", regular)
    }
}

extension BackupSessionStateMachine.Action {
    /// Whether the action stages content of the open checkpoint.
    var isStaged: Bool {
        switch self {
        case .stagePages, .stageDeviceState, .stageDiskWrites: true
        default: false
        }
    }
}
