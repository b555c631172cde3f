import Foundation
import Synchronization
import UnderstudyProtocol
import UnderstudySystem

/// Whole frames over a TLS stream. `send` may be called from any thread (frames never interleave);
/// `receive` from one reader thread at a time.
public final class FrameConnection: @unchecked Sendable {
    public let stream: TLSStream
    private let writeLock = NSLock()
    private let sent = Atomic<UInt64>(0)
    private let received = Atomic<UInt64>(0)

    public init(stream: TLSStream) {
        self.stream = stream
    }

    /// Bytes written and read so far, frame headers included (TLS overhead excluded).
    public var bytesSent: UInt64 { sent.load(ordering: .relaxed) }
    public var bytesReceived: UInt64 { received.load(ordering: .relaxed) }

    public func send(_ frame: Frame) throws(TransportError) {
        writeLock.lock()
        defer { writeLock.unlock() }
        try stream.write(frame.bytes)
        sent.add(UInt64(frame.bytes.count), ordering: .relaxed)
    }

    public func send(_ message: Message) throws(TransportError) { try send(message.frame) }

    /// Reads the next frame. The header is validated before the payload is read, so an oversized
    /// or unknown frame ends the session without buffering it.
    /// - Throws: `TransportError` or `ProtocolError`.
    public func receive() throws -> Frame {
        var header = [UInt8](repeating: 0, count: Frame.headerSize)
        try header.withUnsafeMutableBytes { try stream.read(into: $0) }
        let (_, length) = try Frame.parseHeader(header)
        // Allocated uninitialised and filled straight from TLS: no zero-fill pass over large frames.
        let bytes = try [UInt8](unsafeUninitializedCapacity: Frame.headerSize + length) { buffer, count in
            buffer.baseAddress!.initialize(from: header, count: Frame.headerSize)
            count = Frame.headerSize
            if length > 0 {
                try stream.read(into: UnsafeMutableRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(buffer)[Frame.headerSize...]),
                                continuingMessage: true)
            }
            count = Frame.headerSize + length
        }
        received.add(UInt64(bytes.count), ordering: .relaxed)
        return try Frame(validatedBytes: bytes)
    }

    /// Ends the connection; blocked `send` and `receive` calls return with an error.
    public func close() { stream.shutdown() }
}

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

/// `FrameSender.Usage`, added to by the sender thread and read by others.
final class UsageMeter: Sendable {
    private let usage = Mutex(FrameSender.Usage())

    func add(bytes: Int, busy: Duration) {
        usage.withLock {
            $0.bytes += bytes
            $0.busy += busy
        }
    }

    var value: FrameSender.Usage { usage.withLock { $0 } }
}

/// The first error a background thread hit, readable from other threads.
final class ErrorSlot: Sendable {
    private let slot = Mutex<TransportError?>(nil)

    func record(_ error: TransportError) { slot.withLock { if $0 == nil { $0 = error } } }
    var value: TransportError? { slot.withLock { $0 } }
}
