import Testing
@testable import UnderstudyAgent

@Suite("Checkpoint encoder")
struct CheckpointEncoderTests {
    /// The last-sent copy is mapped ahead of a sync one run of consecutive pages at a time.
    @Test func pagesAreGroupedIntoRunsOfConsecutiveNumbers() {
        #expect(CheckpointEncoder.runs(of: [UInt64]()) == [])
        #expect(CheckpointEncoder.runs(of: [7] as [UInt64]) == [7..<8])
        #expect(CheckpointEncoder.runs(of: [0, 1, 2, 3] as [UInt64]) == [0..<4])
        #expect(CheckpointEncoder.runs(of: [0, 1, 5, 6, 7, 9] as [UInt64]) == [0..<2, 5..<8, 9..<10])
        #expect(CheckpointEncoder.runs(of: [4, 3] as [UInt64]) == [4..<5, 3..<4], "out of order: each page its own run")
    }
}
