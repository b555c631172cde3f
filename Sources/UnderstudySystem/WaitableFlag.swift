import Foundation

/// A boolean one thread sets and clears and another waits on becoming true, with a deadline
/// (blocking: the waiters are dedicated threads, not Swift's cooperative pool).
public final class WaitableFlag: @unchecked Sendable {
    private let condition = NSCondition()
    private var value = false

    public init() {}

    public var isSet: Bool {
        condition.lock()
        defer { condition.unlock() }
        return value
    }

    /// Sets or clears the flag; setting it wakes every waiter. Never blocks for long, so it may
    /// be called under the caller's own lock.
    public func set(_ newValue: Bool) {
        condition.lock()
        defer { condition.unlock() }
        guard value != newValue else { return }
        value = newValue
        if newValue { condition.broadcast() }
    }

    /// Blocks until the flag is set or `deadline` passes; true when set.
    @discardableResult
    public func wait(until deadline: ContinuousClock.Instant) -> Bool {
        let remaining = deadline - .now
        guard remaining > .zero else { return isSet }
        let wallDeadline = Date(timeIntervalSinceNow: remaining.seconds)
        condition.lock()
        defer { condition.unlock() }
        while !value, condition.wait(until: wallDeadline) {}
        return value
    }
}
