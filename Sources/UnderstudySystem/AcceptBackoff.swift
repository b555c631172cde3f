/// How long an accept loop waits after a failed accept: `initial` after the first failure,
/// doubling up to `maximum` while failures continue, and back to `initial` after a success.
///
/// Accept fails for reasons that pass (EMFILE or ENFILE until connections close, ENOBUFS,
/// ECONNABORTED); retrying at once would spin on the error, never retrying would leave the
/// listener dead.
public struct AcceptBackoff: Sendable, Equatable {
    public let initial: Duration
    public let maximum: Duration
    private var next: Duration

    public init(initial: Duration = .milliseconds(10), maximum: Duration = .seconds(1)) {
        precondition(initial > .zero && initial <= maximum, "back-off \(initial)...\(maximum) is not a range")
        self.initial = initial
        self.maximum = maximum
        next = initial
    }

    /// An accept failed: how long to wait before the next one.
    public mutating func failed() -> Duration {
        let delay = next
        next = min(next * 2, maximum)
        return delay
    }

    /// An accept succeeded: the next failure waits `initial` again.
    public mutating func succeeded() { next = initial }
}
