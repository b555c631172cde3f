import Foundation
import Testing
@testable import UnderstudyReplica

/// The journal grows at once for a big epoch and gives the room back only after a long run of
/// smaller ones: one page-cache fill must not hold its size for ever (on tmpfs, that is memory).
@Suite("Journal size")
struct JournalSizePolicyTests {
    @Test func growsAtOnceAndShrinksOnlyAfterAWindowOfSmallEpochs() {
        var policy = JournalSizePolicy(floor: 100, window: 4)
        var size = 0
        func epoch(_ needed: Int) -> Int? {
            let new = policy.size(forEpochNeeding: needed, current: size)
            if let new { size = new }
            return new
        }
        #expect(epoch(50) == 50, "the first epoch makes room")
        #expect(epoch(5000) == 5000, "a bigger epoch grows the file at once")
        #expect(epoch(120) == nil && epoch(130) == nil && epoch(110) == nil, "the big epoch is still in the window")
        #expect(epoch(90) == 130, "four small epochs in a row: back to the largest of them")
        #expect(size == 130)
        #expect(epoch(200) == 200)
        #expect(epoch(101) == nil && epoch(101) == nil && epoch(101) == nil, "never shrunk when within twice the need")
    }

    @Test func neverShrinksBelowTheFloor() {
        var policy = JournalSizePolicy(floor: 1000, window: 2)
        #expect(policy.size(forEpochNeeding: 4000, current: 0) == 4000)
        #expect(policy.size(forEpochNeeding: 10, current: 4000) == nil)
        #expect(policy.size(forEpochNeeding: 10, current: 4000) == 1000)
        #expect(policy.size(forEpochNeeding: 10, current: 1000) == nil)
    }

    /// The journal file itself: a big epoch's room goes back, and what is sealed after the shrink
    /// is complete and readable.
    @Test func theJournalFileShrinksBackAndStaysUsable() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-journal-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let journal = try EpochJournal(path: "\(directory)/journal", pageSize: 4096, sizePolicy: JournalSizePolicy(floor: 64 << 10, window: 3))
        func seal(epoch: UInt64, pages: Int) {
            let layout = EpochJournal.Layout(pageCount: pages, pageSize: 4096, deviceStateLength: 100, diskLength: 0)
            let header = EpochJournal.Header(baseGeneration: 1, epoch: epoch, layout: layout)
            #expect(throws: Never.self) { try journal.begin(header) }
            for slot in 0..<pages {
                journal.pageIndexSlot(slot, layout: layout).storeBytes(of: UInt64(slot), as: UInt64.self)
                journal.page(slot, layout: layout).initializeMemory(as: UInt8.self, repeating: UInt8(epoch))
            }
            journal.seal(header)
        }
        seal(epoch: 1, pages: 1000)
        let big = journal.file.size
        #expect(big > 4_000_000)
        for epoch in UInt64(2)...4 { seal(epoch: epoch, pages: 3) }
        #expect(journal.file.size < big / 10, "three small epochs later the big one's room is gone (\(journal.file.size) bytes)")
        #expect(journal.completeHeader()?.epoch == 4, "the journal sealed after the shrink is complete")
    }
}
