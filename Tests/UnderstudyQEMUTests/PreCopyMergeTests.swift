import Foundation
import Testing
import UnderstudyProtocol
@testable import UnderstudyQEMU

/// Pre-copy's staging, and a checkpoint assembled from it and the pause's copy (no QEMU).
@Suite("Pre-copy staging and merge")
struct PreCopyMergeTests {
    static let pageSize = 64
    static let guestPages = 64

    /// Guest memory of `guestPages` pages where page i holds bytes `value(i)`.
    static func guest(_ value: (Int) -> UInt8) -> [UInt8] {
        (0..<guestPages).flatMap { [UInt8](repeating: value($0), count: pageSize) }
    }

    /// A round of `pages` copied out of `memory` into `staging`, in slices of `slice` pages as a
    /// held round copies them.
    @discardableResult
    static func round(_ pages: [UInt64], of memory: [UInt8], into staging: PreCopyStaging, slice: Int = 1000) -> PreCopyStaging.Placement {
        let placement = staging.place(pages)
        memory.withUnsafeBytes { memory in
            for start in stride(from: 0, to: pages.count, by: slice) {
                staging.copy(placement, at: start..<min(pages.count, start + slice), from: memory)
            }
        }
        return placement
    }

    static func paused(_ pages: [UInt64], of memory: [UInt8]) -> CapturedCheckpoint {
        memory.withUnsafeBytes { CapturedCheckpoint(copying: pages, from: $0, pageSize: pageSize) }
    }

    static func staging() -> PreCopyStaging { PreCopyStaging(guestBytes: guestPages * pageSize, pageSize: pageSize) }

    @Test func everyPageOnceInOrderWithItsNewestCopy() {
        let staging = Self.staging()
        Self.round([2, 5, 9, 40], of: Self.guest { _ in 1 }, into: staging)
        Self.round([5, 7, 40], of: Self.guest { _ in 2 }, into: staging, slice: 2)
        let paused = Self.paused([1, 40], of: Self.guest { _ in 3 })
        paused.deviceState = [7, 7]
        paused.diskChanges = [.flush]
        paused.pause = .milliseconds(2)
        let merged = CapturedCheckpoint.merging(preCopied: staging, paused: paused)
        #expect(merged.pageIndices == [1, 2, 5, 7, 9, 40])
        let expected: [UInt64: UInt8] = [1: 3, 2: 1, 5: 2, 7: 2, 9: 1, 40: 3]
        for (position, index) in merged.pageIndices.enumerated() {
            #expect(Array(merged.page(at: position)) == [UInt8](repeating: expected[index]!, count: Self.pageSize), "page \(index)")
        }
        #expect(merged.deviceState == [7, 7])
        #expect(merged.diskChanges == [.flush])
        #expect(merged.pause == .milliseconds(2))
    }

    /// A page a later round collects again is copied back into its slot: the staging holds each
    /// pre-copied page once, and grows only by pages new to the checkpoint.
    @Test func aPageCollectedAgainIsCopiedBackIntoItsSlot() {
        let staging = Self.staging()
        let first = Self.round([2, 5, 9, 40], of: Self.guest { UInt8($0) }, into: staging)
        let second = Self.round([5, 7, 40], of: Self.guest { UInt8($0) + 100 }, into: staging)
        #expect(first.slots == [0, 1, 2, 3])
        #expect(second.slots == [1, 4, 3], "5 and 40 keep their slots, 7 takes a new one")
        #expect(staging.count == 5)
        let copies = staging.copies
        #expect(copies.map { Array($0.pageIndices) } == [[2, 5, 9, 40], [7]], "one sorted copy per round that added slots")
        let bytes = copies.map { copy in
            copy.pageIndices.indices.map { (copy.bytes + ($0 - copy.pageIndices.startIndex) * Self.pageSize).load(as: UInt8.self) }
        }
        #expect(bytes == [[2, 105, 9, 140], [107]], "a slot holds its page's newest copy")
    }

    /// Slots are faulted in ahead of a round once, and stay mapped for the next checkpoints: a
    /// reservation that found them mapped says so (and the round is then not decided again).
    @Test func aReservationFaultsSlotsInOnceAndTheyStayMapped() {
        let staging = PreCopyStaging(guestBytes: 4096 * Self.pageSize, pageSize: Self.pageSize)
        #expect(staging.reserve(pending: 100), "new slots were faulted in")
        #expect(!staging.reserve(pending: 100), "the slots are mapped already")
        Self.round(Array(0..<100), of: Self.guest { _ in 1 } + [UInt8](repeating: 0, count: 4032 * Self.pageSize), into: staging)
        #expect(staging.reserve(pending: 400), "slots for a round of 400 pages were not mapped yet")
        staging.reset()
        #expect(!staging.reserve(pending: 400), "an emptied staging keeps its slots mapped")
    }

    /// The slots a burst mapped are given back once the checkpoints of a whole `idleRelease`
    /// needed fewer, down to what they needed, and are faulted in again for the next burst.
    @Test func theSlotsABurstMappedAreGivenBackAfterAQuietWhile() {
        let clock = TestClock()
        let pageSize = Int(getpagesize())
        let staging = PreCopyStaging(guestBytes: 8192 * pageSize, pageSize: pageSize, idleRelease: .seconds(30), now: clock.read)
        #expect(staging.reserve(pending: 4000))
        let burst = staging.mappedSlots
        #expect(burst == 4000 + 500 + 256)
        staging.place([0])
        let base = UnsafeMutableRawPointer(mutating: try! #require(staging.copies.first).bytes)
        staging.reset()
        for second in 1...60 {
            clock.advance(.seconds(1))
            #expect(!staging.reserve(pending: 100), "a quiet checkpoint's slots are mapped")
            if second < 60 { staging.reset() }
            #expect(staging.mappedSlots == burst, "after \(second) s")
        }
        // The window of quiet checkpoints is over: each reset gives back at most 4 MiB of slots.
        var mapped = [staging.mappedSlots]
        while mapped.count < 10 {
            staging.reset()
            mapped.append(staging.mappedSlots)
        }
        #expect(mapped == [burst, 3732, 2708, 1684, 660, 368, 368, 368, 368, 368])
        func resident(_ slots: Range<Int>) -> [Bool] {
            var pages = [UInt8](repeating: 0, count: slots.count)
            #expect(mincore(base + slots.lowerBound * pageSize, slots.count * pageSize, &pages) == 0)
            return pages.map { $0 & 1 == 1 }
        }
        #expect(resident(0..<368).allSatisfy { $0 }, "the slots the quiet checkpoints needed stay in memory")
        #expect(resident(368..<burst).allSatisfy { !$0 }, "the burst's other slots were given back")
        #expect(staging.reserve(pending: 4000), "the next burst faults its slots in again")
        #expect(resident(368..<burst).allSatisfy { $0 })
    }

    /// A burst while the slots are being given back stops that: its slots stay mapped.
    @Test func aBurstWhileSlotsAreGivenBackKeepsItsSlots() {
        let clock = TestClock()
        let pageSize = Int(getpagesize())
        let staging = PreCopyStaging(guestBytes: 8192 * pageSize, pageSize: pageSize, idleRelease: .seconds(30), now: clock.read)
        #expect(staging.reserve(pending: 4000))
        staging.reset()
        clock.advance(.seconds(30))
        staging.reset()  // the burst's window
        clock.advance(.seconds(30))
        staging.reset()  // a quiet window: the release begins
        #expect(staging.mappedSlots == 4756 - 1024)
        #expect(staging.reserve(pending: 4000), "the burst is back")
        for _ in 0..<5 { staging.reset() }
        #expect(staging.mappedSlots == 4756)
    }

    /// A checkpoint's slots are emptied for the next: a page it had is new to the next one.
    @Test func resetEmptiesTheSlotsForTheNextCheckpoint() {
        let staging = Self.staging()
        Self.round([3, 4], of: Self.guest { _ in 1 }, into: staging)
        staging.reset()
        #expect(staging.count == 0 && staging.copies.isEmpty)
        let paused = Self.paused([3], of: Self.guest { _ in 9 })
        #expect(CapturedCheckpoint.merging(preCopied: staging, paused: paused) === paused, "without rounds the pause's copy is the checkpoint")
        let next = Self.round([4, 6], of: Self.guest { _ in 2 }, into: staging)
        #expect(next.slots == [0, 1], "page 4's slot from the last checkpoint is not reused as its own")
        let merged = CapturedCheckpoint.merging(preCopied: staging, paused: paused)
        #expect(merged.pageIndices == [3, 4, 6])
        #expect(merged.pages.allSatisfy { $0 == 9 || $0 == 2 } && merged.page(at: 0).allSatisfy { $0 == 9 })
    }

    /// Consecutive pages are copied with one memcpy only when their slots are consecutive too.
    @Test func pagesInScatteredSlotsLandInTheirOwnSlots() {
        let staging = Self.staging()
        Self.round([10, 12], of: Self.guest { _ in 1 }, into: staging)
        Self.round([10, 11, 12, 13], of: Self.guest { UInt8($0) }, into: staging)
        let merged = CapturedCheckpoint.merging(preCopied: staging, paused: Self.paused([], of: Self.guest { _ in 0 }))
        #expect(merged.pageIndices == [10, 11, 12, 13])
        for (position, index) in merged.pageIndices.enumerated() {
            #expect(merged.page(at: position).allSatisfy { $0 == UInt8(index) }, "page \(index)")
        }
    }
}
