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
    /// Rounds copied while the guest ran so far.
    public private(set) var rounds = 0

    public init(stopPages: Int, maxRounds: Int) {
        self.stopPages = max(0, stopPages)
        self.maxRounds = max(0, maxRounds)
    }

    /// `pending` pages are written and not copied yet: true to copy them now while the guest runs
    /// (one more round), false to leave them to the pause.
    public mutating func copyWhileRunning(pending: Int) -> Bool {
        guard pending > stopPages, rounds < maxRounds else { return false }
        rounds += 1
        return true
    }
}
