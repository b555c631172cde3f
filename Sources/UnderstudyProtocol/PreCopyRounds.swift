/// Iterative pre-copy's stopping rule: copy what the guest wrote while it keeps running, round
/// after round (each round re-collects what was written during the previous one), and pause it
/// only for a last round that is small, or once the rounds are used up (a guest that writes
/// faster than the copy converges no further).
///
/// The initial sync starts from all of memory; a checkpoint starts from its dirty set and pays for
/// rounds only when that set is too large to copy within a short pause.
public struct PreCopyRounds: Sendable, Equatable {
    /// A round with at most this many pages is left to the pause.
    public let stopPages: Int
    /// Rounds copied while the guest runs, at most.
    public let maxRounds: Int
    /// A round expected to copy for longer than this (at the copy rate) is not started: while it
    /// copies, a guest that rewrites its working set makes the pause's share as large as the round.
    public let longestRound: Duration
    /// Rounds copied while the guest ran so far.
    public private(set) var rounds = 0
    /// The pages the latest round copied.
    private var latest: Int?

    public init(stopPages: Int, maxRounds: Int, longestRound: Duration = .milliseconds(20)) {
        self.stopPages = max(0, stopPages)
        self.maxRounds = max(0, maxRounds)
        self.longestRound = longestRound
    }

    /// `pending` pages are written and not copied yet: true to copy them now while the guest runs
    /// (one more round), false to leave them to the pause.
    ///
    /// A round only pays if the guest writes fewer pages while it runs than it copies: a round that
    /// found at least as many pages as the one before ends pre-copy, and so do rates (pages per
    /// second) where the guest writes at least half as fast as pages are copied, or a write rate
    /// with no copy rate known yet to weigh it against, and so does a round that would copy for
    /// longer than `longestRound` (a working set rewritten faster than the estimate, which only
    /// sees the pages written since the last collection, not how often). Without a write rate (the
    /// initial sync's rounds) only the page counts decide. A
    /// round lets the guest run longer before the pause, so for a guest that fast it would leave
    /// the pause more to copy, not less.
    public mutating func copyWhileRunning(pending: Int, pagesWrittenPerSecond: Double? = nil,
                                          pagesCopiedPerSecond: Double? = nil) -> Bool {
        guard pending > stopPages, rounds < maxRounds else { return false }
        if let latest, pending >= latest { return false }
        if let written = pagesWrittenPerSecond {
            guard let copied = pagesCopiedPerSecond, written * 2 < copied else { return false }
            let round = Double(pending) / copied
            if round > Double(longestRound.components.seconds) + Double(longestRound.components.attoseconds) / 1e18 { return false }
        }
        rounds += 1
        latest = pending
        return true
    }
}
