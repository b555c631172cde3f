import Testing
import UnderstudyProtocol

@Suite("Pre-copy rounds")
struct PreCopyRoundsTests {
    /// The decisions for successive rounds that found `pending` pages (true: a running round).
    static func decisions(_ rounds: inout PreCopyRounds, _ pending: [Int]) -> [Bool] {
        pending.map { rounds.next(pending: $0) == .running }
    }

    @Test func aSmallDirtySetIsLeftToThePause() {
        var rounds = PreCopyRounds(stopPages: 2048, maxRounds: 4)
        #expect(Self.decisions(&rounds, [0]) == [false])
        rounds = PreCopyRounds(stopPages: 2048, maxRounds: 4)
        #expect(Self.decisions(&rounds, [2048]) == [false])
        #expect(rounds.rounds == 0)
    }

    @Test func aLargeSetIsCopiedInRoundsUntilWhatIsLeftIsSmall() {
        var rounds = PreCopyRounds(stopPages: 100, maxRounds: 4)
        #expect(Self.decisions(&rounds, [50_000, 3_000, 90]) == [true, true, false],
                "what the guest wrote during the last round is small: pause now")
        #expect(rounds.rounds == 2)
    }

    @Test func aSlowlyShrinkingSetIsPausedOnceTheRoundsAreUsedUp() {
        var rounds = PreCopyRounds(stopPages: 100, maxRounds: 3)
        #expect(Self.decisions(&rounds, [10_000, 9_000, 8_000, 7_000]) == [true, true, true, false])
        #expect(rounds.rounds == 3)
    }

    @Test func aRoundThatFoundAsManyPagesAsTheOneBeforeEndsPreCopy() {
        var rounds = PreCopyRounds(stopPages: 100, maxRounds: 5)
        #expect(Self.decisions(&rounds, [10_000, 10_000]) == [true, false], "the guest writes as fast as pages are copied")
        #expect(rounds.rounds == 1)
    }

    /// Measured in the pause bench: a guest writing 1.8 M pages/s, copies at 0.46 M pages/s. A
    /// round of one interval's 46 k pages let it write 180 k more, all then copied in the pause.
    /// (9 k pages, about 20 ms of copying, keep the round within its longest.)
    @Test func aGuestWritingAtLeastHalfAsFastAsTheCopyIsNotPreCopied() {
        var rounds = PreCopyRounds(stopPages: 2048, maxRounds: 4)
        let decisions = [1_800_000.0, 230_000, 100_000].map {
            rounds.next(pending: 9_000, pagesWrittenPerSecond: $0, pagesCopiedPerSecond: 460_000) == .running
        }
        #expect(decisions == [false, false, true])
        var unknown = PreCopyRounds(stopPages: 2048, maxRounds: 4)
        let untimed = unknown.next(pending: 46_000, pagesWrittenPerSecond: 1_000, pagesCopiedPerSecond: nil)
        #expect(untimed == .pause, "no copy timed yet: nothing to weigh the guest against")
    }

    /// Measured in the pause bench: a 196 k-page working set rewritten within a second looked like
    /// 160 k pages/s against a copy of 490 k pages/s; the 400 ms round let the guest rewrite all of
    /// it, and the pause copied 196 k pages again.
    @Test func aRoundLongerThanTheLongestAllowedIsNotStarted() {
        var rounds = PreCopyRounds(stopPages: 2048, maxRounds: 4, longestRound: .milliseconds(20))
        let decisions = [196_000, 9_000].map {
            rounds.next(pending: $0, pagesWrittenPerSecond: 160_000, pagesCopiedPerSecond: 490_000) == .running
        }
        #expect(decisions == [false, true], "196 k pages take 400 ms to copy, 9 k pages 18 ms")
    }

    @Test func noRoundsMeansNoPreCopy() {
        var rounds = PreCopyRounds(stopPages: 0, maxRounds: 0)
        #expect(Self.decisions(&rounds, [1_000_000]) == [false])
    }

    /// The pause bench's dirty load: a guest writing 1.8 M pages/s against copies of 0.46 M
    /// pages/s, with 45 k pages pending after a 25 ms interval. Without holding, all of them were
    /// left to the pause.
    @Test func aGuestTooFastForRunningRoundsIsHeldInSlicesThatOutpaceIt() throws {
        var rounds = PreCopyRounds(stopPages: 2048, maxRounds: 8, holdSlice: .milliseconds(8))
        let first = rounds.next(pending: 45_000, pagesWrittenPerSecond: 1_800_000, pagesCopiedPerSecond: 460_000)
        guard case .held(let hold) = first else {
            Issue.record("a guest writing four times as fast as the copy is held, not left to the pause: \(first)")
            return
        }
        #expect(hold.slice == .milliseconds(8))
        let gap = hold.gap(afterCopying: 3_600)
        #expect(abs(gap.seconds - 0.001) < 1e-9, "running 1 ms after a hold that copied 3,600 pages, the guest writes 1,800 of them")
        #expect(hold.gap(afterCopying: 1_000_000) == .milliseconds(8), "never longer than a slice")
        #expect(rounds.heldRounds == 1 && rounds.rounds == 1)

        // A held round shrinks what is pending; the next one is held too, until the rest is small.
        let second = rounds.next(pending: 20_000, pagesWrittenPerSecond: 1_800_000, pagesCopiedPerSecond: 460_000)
        #expect(second == first)
        #expect(rounds.next(pending: 1_500, pagesWrittenPerSecond: 1_800_000, pagesCopiedPerSecond: 460_000) == .pause)
    }

    @Test func heldRoundsEndWhenTheyStopShrinkingOrAreUsedUp() {
        var stuck = PreCopyRounds(stopPages: 100, maxRounds: 8, holdSlice: .milliseconds(8))
        let held = [10_000, 10_000, 10_000].map { stuck.next(pending: $0, pagesWrittenPerSecond: 1e6, pagesCopiedPerSecond: 4e5) != .pause }
        #expect(held == [true, true, false], """
            the first held round ran on a write rate measured with the guest running freely (one that rewrites a \
            working set looks slower than it is), the second on one measured between holds: when that one does not \
            shrink what is pending either, pre-copy ends
            """)

        var capped = PreCopyRounds(stopPages: 100, maxRounds: 2, holdSlice: .milliseconds(8))
        let decisions = [10_000, 8_000, 6_000].map { capped.next(pending: $0, pagesWrittenPerSecond: 1e6, pagesCopiedPerSecond: 4e5) != .pause }
        #expect(decisions == [true, true, false])
    }

    /// Once a round held the guest, the rounds after it hold it too: running, it would write
    /// faster again than the copy.
    @Test func aRoundAfterAHeldOneIsHeldToo() {
        var rounds = PreCopyRounds(stopPages: 100, maxRounds: 8, holdSlice: .milliseconds(8))
        #expect(rounds.next(pending: 50_000, pagesWrittenPerSecond: 1e6, pagesCopiedPerSecond: 4e5) != .running)
        let after = rounds.next(pending: 5_000, pagesWrittenPerSecond: 1_000, pagesCopiedPerSecond: 4e5)
        #expect(after != .running && after != .pause, "\(after)")
    }

    @Test func nothingIsHeldWithoutAHoldSliceOrAWriteRate() {
        var never = PreCopyRounds(stopPages: 2048, maxRounds: 8)
        #expect(never.next(pending: 45_000, pagesWrittenPerSecond: 1_800_000, pagesCopiedPerSecond: 460_000) == .pause)
        var noCopyRate = PreCopyRounds(stopPages: 2048, maxRounds: 8, holdSlice: .milliseconds(8))
        #expect(noCopyRate.next(pending: 45_000, pagesWrittenPerSecond: 1_800_000, pagesCopiedPerSecond: nil) != .running,
                "no copy timed yet: nothing to weigh the guest against, but holding it bounds the pause anyway")
        var initialSync = PreCopyRounds(stopPages: 2048, maxRounds: 8, holdSlice: .milliseconds(8))
        #expect(initialSync.next(pending: 262_144) == .running, "the initial sync's rounds are decided by page counts alone")
        var zero = PreCopyRounds(stopPages: 2048, maxRounds: 8, holdSlice: .zero)
        #expect(zero.holdSlice == nil)
        #expect(zero.next(pending: 45_000, pagesWrittenPerSecond: 1_800_000, pagesCopiedPerSecond: 460_000) == .pause)
    }

    @Test func noRoundStartsOnceTheBudgetIsUsedUp() {
        var rounds = PreCopyRounds(stopPages: 100, maxRounds: 10, holdSlice: .milliseconds(8), budget: .milliseconds(250))
        #expect(rounds.next(pending: 50_000, pagesWrittenPerSecond: 1e6, pagesCopiedPerSecond: 4e5, elapsed: .milliseconds(10)) != .pause)
        #expect(rounds.next(pending: 20_000, pagesWrittenPerSecond: 1e6, pagesCopiedPerSecond: 4e5, elapsed: .milliseconds(249)) != .pause)
        #expect(rounds.next(pending: 8_000, pagesWrittenPerSecond: 1e6, pagesCopiedPerSecond: 4e5, elapsed: .milliseconds(250)) == .pause)
        #expect(rounds.exhausted(after: .milliseconds(250)) && !rounds.exhausted(after: .milliseconds(249)))
        let unlimited = PreCopyRounds(stopPages: 100, maxRounds: 10)
        #expect(!unlimited.exhausted(after: .seconds(3600)))
    }

    /// Measured in the pause bench: after the budget a guest rewriting a 196 k-page working set
    /// had 40 k pages pending, all copied in a 24 ms pause. With `largestPause` held rounds go on
    /// while they shrink what is pending, until it is no more than that; rounds still cap them.
    @Test func pastTheBudgetHeldRoundsGoOnWhileMoreThanTheLargestPauseIsPending() {
        func next(_ rounds: inout PreCopyRounds, _ pending: Int) -> PreCopyRounds.Round {
            rounds.next(pending: pending, pagesWrittenPerSecond: 1.8e6, pagesCopiedPerSecond: 2e6, elapsed: .milliseconds(300))
        }
        var rounds = PreCopyRounds(stopPages: 2048, maxRounds: 10, holdSlice: .milliseconds(8), budget: .milliseconds(250),
                                   largestPause: 8192)
        let decisions = [40_000, 18_000, 8_500, 8_192].map { next(&rounds, $0) }
        #expect(decisions.prefix(3).allSatisfy { if case .held = $0 { true } else { false } }, "\(decisions)")
        #expect(decisions.last == .pause, "no more than the largest pause is left: pause")
        #expect(rounds.heldRounds == 3)

        var growing = PreCopyRounds(stopPages: 2048, maxRounds: 10, holdSlice: .milliseconds(8), budget: .milliseconds(250),
                                    largestPause: 8192)
        #expect(next(&growing, 40_000) != .pause)
        #expect(next(&growing, 40_000) == .pause, "a held round past the budget that did not shrink what is pending ends pre-copy")

        var capped = PreCopyRounds(stopPages: 2048, maxRounds: 2, holdSlice: .milliseconds(8), budget: .milliseconds(250),
                                   largestPause: 8192)
        #expect([40_000, 20_000, 10_000].map { next(&capped, $0) != .pause } == [true, true, false], "rounds still cap them")

        var unbounded = PreCopyRounds(stopPages: 2048, maxRounds: 10, holdSlice: .milliseconds(8), budget: .milliseconds(250))
        #expect(next(&unbounded, 40_000) == .pause, "without a largest pause the budget ends pre-copy")
        var neverHeld = PreCopyRounds(stopPages: 2048, maxRounds: 10, budget: .milliseconds(250), largestPause: 8192)
        #expect(next(&neverHeld, 40_000) == .pause, "without a hold slice nothing is held")
    }
}
