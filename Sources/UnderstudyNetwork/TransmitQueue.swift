import Foundation
import UnderstudySystem

/// Frames on their way to the TAP, between the threads that release them and the gate's sender
/// thread. Enqueueing never waits, so that the thread receiving acknowledgements is never held up
/// by a slow TAP; instead the queue is bounded in bytes and frames that do not fit are dropped.
final class TransmitQueue: @unchecked Sendable {
    private let condition = NSCondition()
    private var frames: [[UInt8]] = []
    private var head = 0
    private var bytes = 0
    private var closed = false
    /// The sender is back for another frame: everything it took before has been written.
    private var senderIdle = false
    let limit: Int

    init(limit: Int) {
        precondition(limit > 0)
        self.limit = limit
    }

    /// Appends `new` in order without waiting. Returns the frames and bytes that did not fit.
    func enqueue(_ new: [[UInt8]]) -> (frames: Int, bytes: Int) {
        var dropped = (frames: 0, bytes: 0)
        condition.lock()
        defer { condition.unlock() }
        guard !closed else { return (new.count, new.reduce(0) { $0 + $1.count }) }
        for frame in new {
            if bytes + frame.count > limit {
                dropped.frames += 1
                dropped.bytes += frame.count
            } else {
                frames.append(frame)
                bytes += frame.count
            }
        }
        condition.broadcast()
        return dropped
    }

    /// The oldest frame, waiting for one. Nil once the queue is closed.
    func next() -> [UInt8]? {
        condition.lock()
        defer { condition.unlock() }
        senderIdle = true
        condition.broadcast()
        while !closed && head == frames.count { condition.wait() }
        senderIdle = false
        guard !closed else { return nil }
        let frame = frames[head]
        head += 1
        bytes -= frame.count
        if head == frames.count {
            frames.removeAll(keepingCapacity: true)
            head = 0
        } else if head > 64 && head * 2 > frames.count {
            frames.removeFirst(head)
            head = 0
        }
        return frame
    }

    /// Waits until every frame enqueued so far has been written (or `timeout` passes); true when so.
    func waitUntilSent(timeout: Duration) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout.seconds)
        condition.lock()
        defer { condition.unlock() }
        while !closed && !(head == frames.count && senderIdle) {
            if !condition.wait(until: deadline) { return false }
        }
        return true
    }

    /// Wakes the sender and discards what is queued: dropping is always safe, and a stopping gate
    /// (for instance one being fenced) must fall silent at once.
    func close() {
        condition.lock()
        closed = true
        frames = []
        head = 0
        bytes = 0
        condition.broadcast()
        condition.unlock()
    }
}
