import Foundation
import Synchronization
import UnderstudySystem
#if canImport(Glibc)
import Glibc
#endif

/// The link between two nodes for tests and benchmarks: a TCP proxy that delays, rate-limits
/// and buffers each direction of each connection (a thin, long WAN link to a disaster-recovery
/// replica), and that fails on demand, by resetting every connection or by going silent. With the
/// default shape it is a plain relay on loopback. (The kernel here has TBF but no netem, so the
/// delay cannot come from `tc`.)
///
/// Each direction is a bottleneck of its own. A reader thread takes bytes from the sending
/// socket and stamps them with the instant the link will have serialised them (at
/// `bytesPerSecond`, back to back behind what is still queued); a writer thread hands them to the
/// receiving socket `oneWayDelay` after that. While `queueBytes` wait for serialisation the reader
/// stops reading, so the sender's TCP backs off as it would behind a full router queue.
///
/// Not emulated: loss, reordering, and the delay of the TCP handshake (the emulator connects to
/// the target as soon as a client connects). A shape change applies to bytes read afterwards.
/// Call `close()` when done: the threads keep the emulator alive until then.
public final class LinkEmulator: @unchecked Sendable {
    /// What the link does to each direction.
    public struct Shape: Sendable, Equatable {
        /// Propagation delay, added to every byte after its serialisation.
        public var oneWayDelay: Duration
        /// Serialisation rate; 0 means unlimited.
        public var bytesPerSecond: Int
        /// The bottleneck's buffer: bytes that may wait for serialisation before the sender is
        /// held back. Must be positive.
        public var queueBytes: Int

        /// A few hundred KiB, like a router port's buffer.
        public static let defaultQueueBytes = 256 * 1024

        public init(oneWayDelay: Duration = .zero, bytesPerSecond: Int = 0, queueBytes: Int = Shape.defaultQueueBytes) {
            precondition(bytesPerSecond >= 0 && queueBytes > 0, "a link needs a rate of 0 (unlimited) or more and a queue")
            self.oneWayDelay = oneWayDelay
            self.bytesPerSecond = bytesPerSecond
            self.queueBytes = queueBytes
        }
    }

    /// How the link fails when it is cut.
    public enum Failure: Sendable, Equatable {
        /// Every proxied connection is reset on both sides (both peers read an error or EOF), and
        /// new connections are accepted and closed at once.
        case reset
        /// A failed switch port: nothing passes in either direction and no socket closes (no RST,
        /// no FIN: the peers only see silence); new connections are accepted and stay silent too.
        case silence
    }

    /// Names this emulator's threads (`lk-TAG-accept`, `-read`, `-write`): several may run in one process.
    public let tag = String(UInt16.random(in: .min ... .max), radix: 16)

    /// The port the emulator listens on (the one chosen when 0 was asked for).
    public var port: UInt16 { listener.endpoint.port }

    private let listener: TCPListener
    private let target: Endpoint
    private let link: LinkState
    private let lock = NSLock()
    private var failure: Failure?
    private var closed = false
    private var connections: [ProxiedConnection] = []
    private var acceptThread: JoinableThread?

    /// Listens on `listenHost:listenPort` and proxies every connection to `target` through a link
    /// of `shape` (by default a plain relay).
    public init(listenHost: String = "127.0.0.1", listenPort: UInt16 = 0, target: (host: String, port: UInt16),
                shape: Shape = Shape()) throws {
        listener = try TCPListener(endpoint: Endpoint(host: listenHost, port: listenPort))
        self.target = Endpoint(host: target.host, port: target.port)
        link = LinkState(shape: shape)
        acceptThread = JoinableThread(name: "lk-\(tag)-accept") { [self] in acceptLoop() }
    }

    /// Changes the link at run time (a benchmark sweep); bytes already read keep their schedule.
    public func setShape(_ shape: Shape) {
        link.state.withLock { $0.shape = shape }
    }

    /// The link goes down as `failure` says until `restore()`. A reset returns once the
    /// connections are closed.
    public func cut(_ failure: Failure = .reset) {
        let dropped = lock.withLock {
            self.failure = failure
            guard failure == .reset else { return [ProxiedConnection]() }
            defer { connections.removeAll() }
            return connections
        }
        link.state.withLock { $0.silent = failure == .silence }
        ProxiedConnection.reset(dropped)
    }

    /// The link is up again: new connections pass. The connections a silence stalled are reset
    /// first, as their peers' timeouts would have ended them, so the peers reconnect and none of
    /// the bytes held back passes late.
    public func restore() {
        let stalled = lock.withLock {
            defer { failure = nil }
            guard failure == .silence else { return [ProxiedConnection]() }
            defer { connections.removeAll() }
            return connections
        }
        ProxiedConnection.reset(stalled)
        link.state.withLock { $0.silent = false }
    }

    /// True between `cut(_:)` and `restore()`.
    public var isCut: Bool { lock.withLock { failure != nil } }

    /// Bytes delivered so far, to the target and from it, over every connection.
    public var bytesForwarded: (toTarget: Int, fromTarget: Int) {
        link.state.withLock { ($0.delivered[ProxiedConnection.Direction.toTarget.rawValue],
                               $0.delivered[ProxiedConnection.Direction.fromTarget.rawValue]) }
    }

    /// Stops listening, resets every connection and joins every thread. Later calls do nothing.
    public func close() {
        let accepting: JoinableThread? = lock.withLock {
            defer {
                closed = true
                acceptThread = nil
            }
            return closed ? nil : acceptThread
        }
        guard let accepting else { return }
        listener.close()
        accepting.join()
        // The accept loop has ended, so nothing adds connections any more.
        let dropped = lock.withLock {
            defer { connections.removeAll() }
            return connections
        }
        ProxiedConnection.reset(dropped)
    }

    private func acceptLoop() {
        while !lock.withLock({ closed }) {
            closeFinishedConnections()
            var ready = pollfd(fd: listener.fd, events: Int16(POLLIN), revents: 0)
            // A short timeout, so that finished connections are closed soon after they end.
            guard poll(&ready, 1, ProxiedConnection.pollMilliseconds) > 0 else { continue }
            guard let client = try? listener.accept().fd else { continue }
            guard lock.withLock({ failure != .reset }), let server = try? target.connect(timeoutMilliseconds: 2000) else {
                Glibc.close(client)
                continue
            }
            let accepted = lock.withLock {
                guard failure != .reset, !closed else { return false }
                connections.append(ProxiedConnection(client: client, server: server, link: link, tag: tag))
                return true
            }
            if !accepted {
                Glibc.close(client)
                Glibc.close(server)
            }
        }
    }

    /// Joins and closes the connections whose both directions ended (EOF or an error).
    private func closeFinishedConnections() {
        let finished = lock.withLock {
            // Decided once per connection: one that finishes meanwhile waits for the next round.
            let split = Dictionary(grouping: connections) { $0.isFinished }
            connections = split[false] ?? []
            return split[true] ?? []
        }
        for connection in finished { connection.finish() }
    }
}

/// What every connection of one emulator shares: the shape, whether the link is silent, and
/// the delivered-byte counters.
private final class LinkState: Sendable {
    struct State {
        var shape: LinkEmulator.Shape
        /// Cut by `.silence`: nothing is read or delivered.
        var silent = false
        /// Indexed by `ProxiedConnection.Direction`.
        var delivered = [0, 0]
    }

    let state: Mutex<State>

    init(shape: LinkEmulator.Shape) { state = Mutex(State(shape: shape)) }
}

/// One proxied connection: the client's socket, the target's, and per direction a reader and a
/// writer thread around a bounded queue of timed chunks.
private final class ProxiedConnection: @unchecked Sendable {
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
