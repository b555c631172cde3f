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
