import Testing
import UnderstudyProtocol
@testable import UnderstudyQEMU

/// A checkpoint assembled from pre-copy rounds and the pause's copy (no QEMU).
@Suite("Pre-copy merge")
struct PreCopyMergeTests {
    static let pageSize = 64

    /// A copy of `pages` where page i holds bytes `value(i)`.
    static func copy(_ pages: [UInt64], value: (UInt64) -> UInt8) -> CapturedCheckpoint {
        let copy = CapturedCheckpoint(pageIndices: pages, pageSize: pageSize)
        for (position, index) in pages.enumerated() { copy.page(at: position).initializeMemory(as: UInt8.self, repeating: value(index)) }
        return copy
    }

    @Test func everyPageOnceInOrderWithItsNewestCopy() {
        let first = Self.copy([2, 5, 9, 40]) { _ in 1 }
        let second = Self.copy([5, 7, 40]) { _ in 2 }
        let paused = Self.copy([1, 40]) { _ in 3 }
        paused.deviceState = [7, 7]
        paused.diskChanges = [.flush]
        paused.pause = .milliseconds(2)
        let merged = CapturedCheckpoint.merging(preCopied: [first, second], paused: paused)
        #expect(merged.pageIndices == [1, 2, 5, 7, 9, 40])
        let expected: [UInt64: UInt8] = [1: 3, 2: 1, 5: 2, 7: 2, 9: 1, 40: 3]
        for (position, index) in merged.pageIndices.enumerated() {
            #expect(Array(merged.page(at: position)) == [UInt8](repeating: expected[index]!, count: Self.pageSize), "page \(index)")
        }
        #expect(merged.deviceState == [7, 7])
        #expect(merged.diskChanges == [.flush])
        #expect(merged.pause == .milliseconds(2))
    }

    @Test func withoutRoundsThePausesCopyIsTheCheckpoint() {
        let paused = Self.copy([3]) { _ in 9 }
        #expect(CapturedCheckpoint.merging(preCopied: [], paused: paused) === paused)
    }
}
