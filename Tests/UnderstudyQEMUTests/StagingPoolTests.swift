import Testing
@testable import UnderstudyQEMU

@Suite("Staging pool")
struct StagingPoolTests {
    /// The pause's staging must come from a buffer reserved (and faulted in) before the stop, not
    /// from a new allocation inside the pause.
    @Test func aReservedBufferIsWhatTheNextTakeOfThatSizeGets() {
        let pool = StagingPool()
        #expect(pool.reserve(byteCount: 3 << 20), "a new buffer was faulted in")
        let reserved = pool.take(byteCount: 2 << 20 + 5)
        #expect(reserved.count == 3 << 20, "the reserved 3 MiB buffer serves a 2 MiB request")
        pool.give(reserved)
        #expect(!pool.reserve(byteCount: 3 << 20))
        #expect(pool.take(byteCount: 3 << 20).baseAddress == reserved.baseAddress, "a free buffer large enough is not reserved twice")
    }

    @Test func aTakeGetsTheSmallestFreeBufferThatFits() {
        let pool = StagingPool()
        let large = pool.take(byteCount: 8 << 20)
        let small = pool.take(byteCount: 2 << 20)
        pool.give(large)
        pool.give(small)
        #expect(pool.take(byteCount: 1 << 20).baseAddress == small.baseAddress, "the 8 MiB buffer stays for a larger set")
        #expect(pool.take(byteCount: 1 << 20).baseAddress == large.baseAddress)
    }
}
