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
        #expect(reserved.bytes.count == 3 << 20, "the reserved 3 MiB buffer serves a 2 MiB request")
        pool.give(reserved)
        #expect(!pool.reserve(byteCount: 3 << 20))
        #expect(pool.take(byteCount: 3 << 20).bytes.baseAddress == reserved.bytes.baseAddress, "a free buffer large enough is not reserved twice")
    }

    @Test func aTakeGetsTheSmallestFreeBufferThatFits() {
        let pool = StagingPool()
        let large = pool.take(byteCount: 8 << 20)
        let small = pool.take(byteCount: 2 << 20)
        pool.give(large)
        pool.give(small)
        #expect(pool.take(byteCount: 1 << 20).bytes.baseAddress == small.bytes.baseAddress, "the 8 MiB buffer stays for a larger set")
        #expect(pool.take(byteCount: 1 << 20).bytes.baseAddress == large.bytes.baseAddress)
    }

    /// A burst's buffers are given back once no checkpoint has needed them for `idleRelease`;
    /// the buffers in use stay.
    @Test func aBuffersMemoryIsGivenBackWhenNoCheckpointNeedsItForLong() {
        let clock = TestClock()
        let pool = StagingPool(idleRelease: .seconds(30), now: clock.read)
        let burst = (0..<3).map { _ in pool.take(byteCount: 64 << 20) } + [pool.take(byteCount: 1 << 20)]
        for buffer in burst { pool.give(buffer) }
        #expect(pool.freeBytes == 193 << 20)
        for second in stride(from: 1, through: 31, by: 1) {
            clock.advance(.seconds(1))
            pool.give(pool.take(byteCount: 1 << 20))  // a small checkpoint each second
            #expect(pool.freeBytes == (second <= 30 ? 193 << 20 : 1 << 20), "after \(second) s")
        }
    }

    /// Taking runs in the pause: it never unmaps a buffer, however long the others sat unused.
    @Test func takingNeverGivesMemoryBack() {
        let clock = TestClock()
        let pool = StagingPool(idleRelease: .seconds(30), now: clock.read)
        let buffers = [pool.take(byteCount: 64 << 20), pool.take(byteCount: 1 << 20)]
        for buffer in buffers { pool.give(buffer) }
        clock.advance(.seconds(60))
        _ = pool.take(byteCount: 1 << 20)
        #expect(pool.freeBytes == 64 << 20)
    }

    /// A buffer that `reserve` found ready counts as needed: it is still there for the pause's
    /// take after the idle time has passed since it was last given back.
    @Test func aReservedBufferIsNotGivenBackBeforeThePauseTakesIt() {
        let clock = TestClock()
        let pool = StagingPool(idleRelease: .seconds(30), now: clock.read)
        let large = pool.take(byteCount: 64 << 20)
        let small = pool.take(byteCount: 1 << 20)
        pool.give(large)
        pool.give(small)
        clock.advance(.seconds(29))
        #expect(!pool.reserve(byteCount: 48 << 20), "the free 64 MiB buffer is ready")
        clock.advance(.seconds(2))
        pool.give(pool.take(byteCount: 1 << 20))  // an older checkpoint's buffer comes back meanwhile
        #expect(pool.freeBytes == 65 << 20)
        #expect(pool.take(byteCount: 48 << 20).bytes.baseAddress == large.bytes.baseAddress)
    }
}
