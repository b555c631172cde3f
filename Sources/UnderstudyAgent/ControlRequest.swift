import Foundation
import UnderstudyProtocol

/// A control command handed from the control thread to the thread that carries it out, and the
/// reply that thread gives: a planned switchover (the protector's loop) or a forced failover
/// (the supervisor's). The control thread waits; the carrying thread finishes it once.
final class ControlRequest: @unchecked Sendable {
    private let done = NSCondition()
    private var reply: ControlReply?

    func finish(_ reply: ControlReply) {
        done.lock()
        self.reply = reply
        done.broadcast()
        done.unlock()
    }

    /// The reply, or nil when none came within `timeout`.
    func wait(timeout: Duration) -> ControlReply? {
        done.lock()
        defer { done.unlock() }
        let deadline = Date(timeIntervalSinceNow: timeout.seconds)
        while reply == nil, done.wait(until: deadline) {}
        return reply
    }
}
