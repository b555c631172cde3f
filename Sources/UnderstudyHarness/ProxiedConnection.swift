import Foundation
import Synchronization
import UnderstudySystem
#if canImport(Glibc)
import Glibc
#endif

/// One proxied connection: the client's socket, the target's, and per direction a reader and a
/// writer thread around a bounded queue of timed chunks.
final class ProxiedConnection: @unchecked Sendable {
    enum Direction: Int, CaseIterable {
        case toTarget = 0
        case fromTarget = 1
    }

    /// How long a thread waits in poll before it looks for an abort again.
    static let pollMilliseconds: Int32 = 20
    /// The most bytes one read takes, so that pacing is smooth at any rate.
    static let chunkBytes = 16 * 1024
    /// With no rate limit the wire would hold any amount in flight; this bounds the memory the
    /// delay holds (and caps throughput at 64 MiB per one-way delay, beyond what loopback moves).
    static let unlimitedInFlightBytes = 64 * 1024 * 1024

    private struct Chunk {
        let bytes: [UInt8]
        let deliverAt: ContinuousClock.Instant
    }

    /// One direction's bottleneck: chunks from reading to delivery.
    private struct Lane {
        var chunks: [Chunk] = []
        var head = 0
        var heldBytes = 0
        /// When the link will have serialised the last chunk read.
        var serialisedUntil = ContinuousClock.now
        var sourceEnded = false

        /// Bytes the reader may take now: the queue holds what waits for serialisation, the wire
        /// what has been serialised and still propagates.
        func room(at now: ContinuousClock.Instant, shape: LinkEmulator.Shape) -> Int {
            guard shape.bytesPerSecond > 0 else {
                return shape.queueBytes + ProxiedConnection.unlimitedInFlightBytes - heldBytes
            }
            let waiting = serialisedUntil > now ? ProxiedConnection.bytes(in: serialisedUntil - now, at: shape.bytesPerSecond) : 0
            let onTheWire = ProxiedConnection.bytes(in: shape.oneWayDelay, at: shape.bytesPerSecond)
            return min(shape.queueBytes - waiting, shape.queueBytes + onTheWire - heldBytes)
        }

        /// Queues `bytes` read at `now`: serialised back to back behind what waits, delivered
        /// the one-way delay later.
        mutating func append(_ bytes: [UInt8], at now: ContinuousClock.Instant, shape: LinkEmulator.Shape) {
            let start = max(now, serialisedUntil)
            serialisedUntil = shape.bytesPerSecond > 0
                ? start + .nanoseconds(Int64(bytes.count) * 1_000_000_000 / Int64(shape.bytesPerSecond)) : start
            chunks.append(Chunk(bytes: bytes, deliverAt: serialisedUntil + shape.oneWayDelay))
            heldBytes += bytes.count
        }

        /// Takes the oldest chunk if it is due at `now`; otherwise says how long until it is.
        mutating func takeDue(at now: ContinuousClock.Instant) -> Due {
            guard head < chunks.count else { return .empty }
            let wait = chunks[head].deliverAt - now
            guard wait <= .zero else { return .notYet(wait) }
            let chunk = chunks[head]
            head += 1
            heldBytes -= chunk.bytes.count
            // Drop delivered chunks in batches: removing the first element each time is quadratic.
            if head > 64 && head * 2 > chunks.count {
                chunks.removeFirst(head)
                head = 0
            }
            return .due(chunk.bytes)
        }
    }

    private enum Due {
        case due([UInt8])
        case notYet(Duration)
        case empty
    }

    private enum Next {
        case deliver([UInt8])
        case sourceEnded
        case aborted
    }

    private let client: Int32
    private let server: Int32
    private let link: LinkState
    private let condition = NSCondition()
    private var lanes = [Lane(), Lane()]
    private var aborted = false
    private var runningThreads = 0
    private var threads: [JoinableThread] = []

    /// Starts the four threads; the connection owns both sockets from now on.
    init(client: Int32, server: Int32, link: LinkState, tag: String) {
        self.client = client
        self.server = server
        self.link = link
        runningThreads = 2 * Direction.allCases.count
        threads = Direction.allCases.flatMap { direction in
            [JoinableThread(name: "lk-\(tag)-read") { [self] in
                readLoop(direction)
                threadEnded()
            },
             JoinableThread(name: "lk-\(tag)-write") { [self] in
                writeLoop(direction)
                threadEnded()
            }]
        }
    }

    /// True once all four threads ended: both directions delivered their EOF, or one failed.
    var isFinished: Bool { condition.withLock { runningThreads == 0 } }

    /// Aborts every connection in `connections`, then joins and closes them.
    static func reset(_ connections: [ProxiedConnection]) {
        for connection in connections { connection.abort() }
        for connection in connections { connection.finish() }
    }

    /// Joins the threads (they end within `pollMilliseconds` of an abort) and closes both sockets,
    /// with a reset when the connection was aborted. Once only, by whoever removed the connection
    /// from the emulator's list.
    func finish() {
        for thread in threads { thread.join() }
        if condition.withLock({ aborted }) {
            // SO_LINGER with a zero timeout makes close() send RST: the link failed, no orderly FIN.
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
            for fd in [client, server] {
                setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
            }
        }
        Glibc.close(client)
        Glibc.close(server)
    }

    private func abort() {
        condition.withLock {
            aborted = true
            condition.broadcast()
        }
    }

    private func threadEnded() {
        condition.withLock { runningThreads -= 1 }
    }

    private func sockets(_ direction: Direction) -> (source: Int32, destination: Int32) {
        direction == .toTarget ? (client, server) : (server, client)
    }

    private func readLoop(_ direction: Direction) {
        let source = sockets(direction).source
        while let room = waitForRoom(direction) {
            var ready = pollfd(fd: source, events: Int16(POLLIN), revents: 0)
            let status = poll(&ready, 1, Self.pollMilliseconds)
            if status == 0 || (status < 0 && errno == EINTR) { continue }
            if status < 0 { return abort() }
            var count = 0
            var readError: Int32 = 0
            let bytes = [UInt8](unsafeUninitializedCapacity: min(room, Self.chunkBytes)) { buffer, initialized in
                // read() writes at most buffer.count bytes into the buffer it is given, and
                // `initialized` counts only what it wrote.
                count = read(source, buffer.baseAddress, buffer.count)
                readError = errno
                initialized = max(count, 0)
            }
            if count > 0 {
                enqueue(bytes, direction)
            } else if count == 0 {
                return condition.withLock {
                    lanes[direction.rawValue].sourceEnded = true
                    condition.broadcast()
                }
            } else if readError != EINTR && readError != EAGAIN {
                return abort()
            }
        }
    }

    /// Waits until the lane has room and the link is not silent; nil once the connection is aborted.
    private func waitForRoom(_ direction: Direction) -> Int? {
        condition.withLock {
            while !aborted {
                let (shape, silent) = link.state.withLock { ($0.shape, $0.silent) }
                let room = lanes[direction.rawValue].room(at: .now, shape: shape)
                if room > 0 && !silent { return room }
                // Serialisation frees room as time passes, deliveries when they happen (they
                // signal); a restore is noticed within the same few milliseconds.
                _ = condition.wait(until: Date(timeIntervalSinceNow: 0.005))
            }
            return nil
        }
    }

    private func enqueue(_ bytes: [UInt8], _ direction: Direction) {
        let shape = link.state.withLock { $0.shape }
        condition.withLock {
            lanes[direction.rawValue].append(bytes, at: .now, shape: shape)
            condition.broadcast()
        }
    }

    private func writeLoop(_ direction: Direction) {
        let destination = sockets(direction).destination
        while true {
            switch nextDue(direction) {
            case .aborted:
                return
            case .sourceEnded:
                // The half-close crosses the link after the last byte, as a FIN would.
                shutdown(destination, Int32(SHUT_WR))
                return
            case .deliver(let bytes):
                guard deliver(bytes, to: destination) else { return abort() }
                link.state.withLock { $0.delivered[direction.rawValue] += bytes.count }
            }
        }
    }

    /// Waits for the oldest chunk's delivery time, and while the link is silent, and takes the
    /// chunk off the lane.
    private func nextDue(_ direction: Direction) -> Next {
        condition.withLock {
            while !aborted {
                if link.state.withLock({ $0.silent }) {
                    _ = condition.wait(until: Date(timeIntervalSinceNow: 0.005))
                    continue
                }
                switch lanes[direction.rawValue].takeDue(at: .now) {
                case .due(let bytes):
                    condition.broadcast()
                    return .deliver(bytes)
                case .notYet(let wait):
                    _ = condition.wait(until: Date(timeIntervalSinceNow: wait / .seconds(1)))
                case .empty:
                    if lanes[direction.rawValue].sourceEnded { return .sourceEnded }
                    condition.wait()
                }
            }
            return .aborted
        }
    }

    /// Writes all of `bytes`, polling so that an abort is noticed while the receiver is not
    /// reading. False when the socket failed or the connection was aborted.
    private func deliver(_ bytes: [UInt8], to destination: Int32) -> Bool {
        var offset = 0
        while offset < bytes.count {
            if condition.withLock({ aborted }) { return false }
            var ready = pollfd(fd: destination, events: Int16(POLLOUT), revents: 0)
            let status = poll(&ready, 1, Self.pollMilliseconds)
            if status < 0 && errno != EINTR { return false }
            if status <= 0 { continue }
            // The pointer and count come from the array slice, valid for the call.
            let written = bytes[offset...].withUnsafeBytes {
                Glibc.send(destination, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
            }
            if written > 0 {
                offset += written
            } else if errno != EAGAIN && errno != EINTR {
                return false
            }
        }
        return true
    }

    static func bytes(in duration: Duration, at bytesPerSecond: Int) -> Int {
        Int(duration / .seconds(1) * Double(bytesPerSecond))
    }
}
