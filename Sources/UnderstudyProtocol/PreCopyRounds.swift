import UnderstudySystem

/// Iterative pre-copy's stopping rule: copy what the guest wrote while it keeps running, round
/// after round (each round re-collects what was written during the previous one), and pause it
/// only for a last round that is small, or once the rounds are used up.
///
/// A guest that writes faster than a round converges is held: its round is copied in slices,
/// each with the guest stopped for at most `holdSlice`, and the guest runs only a short gap
/// between slices, short enough that it writes at most half of what a slice copied. That
/// throttles the guest while the rounds catch up, so the pause is left a small set instead of
/// everything such a guest wrote (the bound QEMU's auto-converge gives migrations, in slices the
/// guest sees as short stalls rather than one long one).
///
/// The initial sync starts from all of memory; a checkpoint starts from its dirty set and pays for
/// rounds only when that set is too large to copy within a short pause.
public struct PreCopyRounds: Sendable, Equatable {
    /// A round with at most this many pages is left to the pause.
    public let stopPages: Int
    /// Rounds copied before the pause, at most.
    public let maxRounds: Int
    /// A round expected to copy for longer than this (at the copy rate) is not started with the
    /// guest running: while it copies, a guest that rewrites its working set makes the pause's
    /// share as large as the round.
    public let longestRound: Duration
    /// The longest the guest is stopped for one slice of a held round (nil: never hold; a guest
    /// too fast for running rounds leaves everything to the pause).
    public let holdSlice: Duration?
    /// How long pre-copy may take in all (nil: no limit): no round starts after it, so that a
    /// checkpoint, and the output waiting for it, is never held up for long (measured: held rounds
    /// into new staging, which faults in at about 11 µs a page here, kept one checkpoint for 10 s),
    /// except held rounds while more than `largestPause` pages are pending.
    public let budget: Duration?
    /// The most pages the budget may leave to the pause (nil: any number). Past the budget, held
    /// rounds go on while each shrinks what is pending, until it is no more than this: the output
    /// then waits a little longer rather than the guest pausing longer (measured: a guest
    /// rewriting a 196 k-page working set left 40 k pages, a 24 ms pause, to a pause after the
    /// budget). `maxRounds` still bounds them.
    public let largestPause: Int?
    /// Rounds copied before the pause so far, and how many of them held the guest.
    public private(set) var rounds = 0
    public private(set) var heldRounds = 0
    /// The pages the latest round copied.
    private var latest: Int?

    /// What to do with the pages pending now.
    public enum Round: Sendable, Equatable {
        /// Leave them to the pause.
        case pause
        /// Collect and copy them while the guest runs.
        case running
        /// Collect them, then copy them with the guest stopped for at most `Hold.slice` at a
        /// time, letting it run for `Hold.gap(afterCopying:)` after each slice.
        case held(Hold)
    }

    /// How a held round alternates holding and running the guest.
    public struct Hold: Sendable, Equatable {
        /// The longest one hold keeps the guest stopped.
        public let slice: Duration
        /// How fast the guest writes while it runs (pages per second).
        public let pagesWrittenPerSecond: Double

        /// How long the guest runs after a hold that copied `pages`: while it runs it writes at
        /// most half of them, so each hold shrinks what is pending by at least half of what it
        /// copied (never longer than a slice).
        public func gap(afterCopying pages: Int) -> Duration {
            min(slice, .seconds(Double(pages) / (2 * pagesWrittenPerSecond)))
        }
    }

    public init(stopPages: Int, maxRounds: Int, longestRound: Duration = .milliseconds(20), holdSlice: Duration? = nil,
                budget: Duration? = nil, largestPause: Int? = nil) {
        self.budget = budget
        self.largestPause = largestPause
        self.stopPages = max(0, stopPages)
        self.maxRounds = max(0, maxRounds)
        self.longestRound = longestRound
        self.holdSlice = holdSlice.flatMap { $0 > .zero ? $0 : nil }
    }

    /// `pending` pages are written and not copied yet, `elapsed` after pre-copy began: the next
    /// round for them.
    ///
    /// A running round only pays if the guest writes fewer pages while it runs than it copies: a
    /// round that found at least as many pages as the one before ends running rounds, and so do
    /// rates (pages per second) where the guest writes at least half as fast as pages are copied,
    /// or a write rate with no copy rate known yet to weigh it against, and so does a round that
    /// would copy for longer than `longestRound` (a working set rewritten faster than the estimate,
    /// which only sees the pages written since the last collection, not how often). For a guest
    /// that fast a running round would leave the pause more to copy, not less, so the round is
    /// held instead when `holdSlice` allows it.
    /// Without a write rate (the initial sync's rounds) only the page counts decide, and nothing
    /// is held. Held rounds go on while each finds fewer pages than the one before; the second
    /// always goes, since the first ran on a write rate measured with the guest running freely,
    /// which for a guest rewriting a working set is lower than its rate between holds. Past the
    /// budget only held rounds go, and only while more than `largestPause` pages are pending and
    /// each round finds fewer than the one before.
    public mutating func next(pending: Int, pagesWrittenPerSecond: Double? = nil, pagesCopiedPerSecond: Double? = nil,
                              elapsed: Duration = .zero) -> Round {
        guard pending > stopPages, rounds < maxRounds else { return .pause }
        let shrinking = latest.map { pending < $0 } ?? true
        if exhausted(after: elapsed) {
            guard let largestPause, pending > largestPause, shrinking else { return .pause }
        } else if heldRounds == 0, shrinking,
                  runningRoundPays(pending: pending, written: pagesWrittenPerSecond, copied: pagesCopiedPerSecond) {
            return take(.running, pending: pending)
        }
        guard let holdSlice, let written = pagesWrittenPerSecond, written > 0, heldRounds <= 1 || shrinking else { return .pause }
        heldRounds += 1
        return take(.held(Hold(slice: holdSlice, pagesWrittenPerSecond: written)), pending: pending)
    }

    /// True once `elapsed` used up the budget.
    public func exhausted(after elapsed: Duration) -> Bool { budget.map { elapsed >= $0 } ?? false }

    private func runningRoundPays(pending: Int, written: Double?, copied: Double?) -> Bool {
        guard let written else { return true }
        guard let copied, written * 2 < copied else { return false }
        return Double(pending) / copied <= longestRound.seconds
    }

    private mutating func take(_ round: Round, pending: Int) -> Round {
        rounds += 1
        latest = pending
        return round
    }
}
