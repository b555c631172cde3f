import Foundation

/// A one-shot flag between threads: triggered once, set for good, and waited for by threads
/// that block (the agent's loops run on dedicated threads, not on Swift's cooperative pool).
public final class Latch: @unchecked Sendable {
    private let condition = NSCondition()
    private var set = false

    public init() {}

    /// Sets the latch and wakes every waiter; later calls change nothing.
    public func trigger() {
        condition.lock()
        set = true
        condition.broadcast()
        condition.unlock()
    }

    public var isSet: Bool {
        condition.lock()
        defer { condition.unlock() }
        return set
    }

    /// Blocks until the latch is set or `timeout` passes; true when set.
    public func wait(timeout: Duration) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout.seconds)
        condition.lock()
        defer { condition.unlock() }
        while !set, condition.wait(until: deadline) {}
        return set
    }

    /// Blocks until the latch is set.
    public func wait() {
        condition.lock()
        defer { condition.unlock() }
        while !set { condition.wait() }
    }
}
