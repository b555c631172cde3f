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

    @Test func aGuestThatOutrunsTheCopyIsPausedOnceTheRoundsAreUsedUp() {
        var rounds = PreCopyRounds(stopPages: 100, maxRounds: 3)
        #expect(Self.decisions(&rounds, [10_000, 10_000, 10_000, 10_000]) == [true, true, true, false])
        #expect(rounds.rounds == 3)
    }

    @Test func noRoundsMeansNoPreCopy() {
        var rounds = PreCopyRounds(stopPages: 0, maxRounds: 0)
        #expect(Self.decisions(&rounds, [1_000_000]) == [false])
    }
}
