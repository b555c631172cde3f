import Testing
import UnderstudyProtocol

@Suite("Pre-copy rounds")
struct PreCopyRoundsTests {
    /// The decisions for successive rounds that found `pending` pages.
    static func decisions(_ rounds: inout PreCopyRounds, _ pending: [Int]) -> [Bool] {
        pending.map { rounds.copyWhileRunning(pending: $0) }
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
            rounds.copyWhileRunning(pending: 9_000, pagesWrittenPerSecond: $0, pagesCopiedPerSecond: 460_000)
        }
        #expect(decisions == [false, false, true])
        var unknown = PreCopyRounds(stopPages: 2048, maxRounds: 4)
        let untimed = unknown.copyWhileRunning(pending: 46_000, pagesWrittenPerSecond: 1_000, pagesCopiedPerSecond: nil)
        #expect(!untimed, "no copy timed yet: nothing to weigh the guest against")
    }

    /// Measured in the pause bench: a 196 k-page working set rewritten within a second looked like
    /// 160 k pages/s against a copy of 490 k pages/s; the 400 ms round let the guest rewrite all of
    /// it, and the pause copied 196 k pages again.
    @Test func aRoundLongerThanTheLongestAllowedIsNotStarted() {
        var rounds = PreCopyRounds(stopPages: 2048, maxRounds: 4, longestRound: .milliseconds(20))
        let decisions = [196_000, 9_000].map {
            rounds.copyWhileRunning(pending: $0, pagesWrittenPerSecond: 160_000, pagesCopiedPerSecond: 490_000)
        }
        #expect(decisions == [false, true], "196 k pages take 400 ms to copy, 9 k pages 18 ms")
    }

    @Test func noRoundsMeansNoPreCopy() {
        var rounds = PreCopyRounds(stopPages: 0, maxRounds: 0)
        #expect(Self.decisions(&rounds, [1_000_000]) == [false])
    }
}
