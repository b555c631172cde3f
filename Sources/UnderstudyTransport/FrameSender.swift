import Foundation
import UnderstudyProtocol
import UnderstudySystem

/// A dedicated thread that writes frames from a bounded queue, so that producers (encoder
/// threads) block when the network falls behind instead of buffering without limit. With a rate
/// limit, a token bucket paces the frames (a bandwidth cap on a shared WAN link).
public final class FrameSender: @unchecked Sendable {
    /// Bytes written, and the time the thread spent pacing and writing them: over a stretch where
    /// it never waited for frames, bytes over busy time is the throughput the link achieved.
    public struct Usage: Sendable, Equatable {
        public var bytes = 0
        public var busy: Duration = .zero

        public init() {}
    }

    private let queue: BlockingQueue<Frame>
    private let failure = ErrorSlot()
    private let usage = UsageMeter()
    private var thread: JoinableThread?

    /// - Parameters:
    ///   - capacity: frames queued at most (each up to `Frame.maxPayload` bytes).
    ///   - bytesPerSecond: the rate cap; nil: as fast as the connection takes them.
    public init(connection: FrameConnection, capacity: Int, name: String = "frame-sender", bytesPerSecond: Int? = nil) {
        let queue = BlockingQueue<Frame>(capacity: capacity)
        self.queue = queue
        let failure = self.failure
        let usage = self.usage
        thread = JoinableThread(name: name) { [queue] in
            var bucket = bytesPerSecond.map { TokenBucket(bytesPerSecond: $0, now: .now) }
            while let frame = queue.pop() {
                let start = ContinuousClock.now
                if let wait = bucket?.take(frame.bytes.count, now: start), wait > .zero { Thread.sleep(forTimeInterval: wait.seconds) }
                do throws(TransportError) {
                    try connection.send(frame)
                } catch {
                    failure.record(error)
                    queue.close()
                    connection.close()
                    return
                }
                let busy = ContinuousClock.now - start
                usage.add(bytes: frame.bytes.count, busy: busy)
            }
        }
    }

    /// What the thread has written so far, and how long it was busy doing so.
    public var written: Usage { usage.value }

    /// Frames waiting to be written.
    public var queued: Int { queue.count }

    /// Queues a frame, waiting while the queue is full. Throws once sending has failed.
    public func enqueue(_ frame: Frame) throws(TransportError) {
        if !queue.push(frame) {
            throw error ?? .closed("sender stopped")
        }
    }

    /// Queues a frame only if there is room now (heartbeats: a full queue means frames are
    /// flowing, or the link is stuck, and waiting would not help either way).
    public func offer(_ frame: Frame) -> Bool { queue.offer(frame) }

    /// The error that stopped the sender, if any.
    public var error: TransportError? { failure.value }

    /// Sends what is queued, then stops the thread.
    public func finish() throws(TransportError) {
        queue.close()
        thread?.join()
        thread = nil
        if let error { throw error }
    }
}
