import CUnderstudyShims
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
import UnderstudySystem
#endif

/// The second heartbeat path: small UDP datagrams between the two nodes, over addresses the
/// operator picks (ideally another link than the replication connection), so that one broken
/// link is not taken for a dead peer.
///
/// Datagrams are authenticated (`HeartbeatDatagram`) under a key exported from the replication
/// session's TLS, which both nodes hand over with `use(key:)` once a session is up; the key
/// stays in use when the link breaks, which is when this path matters. Until a first session,
/// nothing is sent and nothing counts. What counts is decided by `HeartbeatDatagramVerifier`:
/// the peer's address, the key, a sequence that only grows.
public final class HeartbeatDatagrams: @unchecked Sendable {
    public let listen: Endpoint
    private let fd: Int32
    private let peer: [UInt8]
    private let vm: String
    private let node: String
    private let shared: Shared
    private var thread: JoinableThread?

    /// The state the receiving thread shares with senders, apart from `self` so that the thread
    /// does not keep the object alive.
    private final class Shared: Sendable {
        let state: Mutex<State>
        init(_ state: State) { self.state = Mutex(state) }
    }

    private struct State {
        var verifier: HeartbeatDatagramVerifier
        var key: [UInt8]?
        var sequence: UInt64 = 0
        /// Datagrams that did not count, by why; a few are expected (a session's key changes
        /// on one side first), many say someone else sends to this port.
        var rejected = 0
    }

    /// Binds `listen` and starts a thread that calls `heard` for each datagram from `peerName`
    /// about `vm` that `HeartbeatDatagramVerifier` accepts; `send` goes to `peerAddress`. The
    /// receiving thread runs under real-time scheduling when permitted (`RealtimePriority`): a
    /// datagram that waits in the socket while its reader waits for a core would read as silence.
    public init(listen: Endpoint, peerAddress: Endpoint, vm: String, node: String, peerName: String,
                heard: @escaping @Sendable () -> Void) throws(TransportError) {
        guard let local = try listen.resolve(passive: true, socketType: Int32(SOCK_DGRAM.rawValue)).first else {
            throw .invalidAddress("cannot resolve \(listen)")
        }
        guard let remote = try peerAddress.resolve(passive: false, socketType: Int32(SOCK_DGRAM.rawValue)).first(where: { $0.family == local.family }) else {
            throw .invalidAddress("\(peerAddress) has no address of the same family as \(listen)")
        }
        let fd = socket(local.family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .system(operation: "socket", errno: errno) }
        let bound = local.address.withUnsafeBytes { raw in
            bind(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
        }
        guard bound == 0 else {
            let error = errno
            Glibc.close(fd)
            throw .system(operation: "bind the heartbeat datagram socket to \(listen)", errno: error)
        }
        self.fd = fd
        self.listen = Endpoint(host: listen.host, port: TCPListener.boundPort(fd))
        peer = remote.address
        self.vm = vm
        self.node = node
        let shared = Shared(State(verifier: HeartbeatDatagramVerifier(vm: vm, peerName: peerName)))
        self.shared = shared
        let peerIdentity = Self.identity(of: remote.address)
        thread = JoinableThread(name: "heartbeat-udp") {
            RealtimePriority.raiseCurrentThread()
            var buffer = [UInt8](repeating: 0, count: HeartbeatDatagram.maximumLength + 1)
            var source = sockaddr_storage()
            while true {
                var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
                let count = withUnsafeMutablePointer(to: &source) { pointer in
                    pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, &buffer, buffer.count, 0, $0, &length) }
                }
                if count < 0 {
                    if errno == EINTR { continue }
                    return
                }
                if count == 0 { return }
                let sourceBytes = withUnsafeBytes(of: &source) { Array($0.prefix(Int(length))) }
                let fromPeer = Self.identity(of: sourceBytes) == peerIdentity
                let verdict = shared.state.withLock { state in
                    let verdict = state.verifier.received(Array(buffer[0..<count]), fromPeer: fromPeer)
                    if case .failure = verdict { state.rejected += 1 }
                    return verdict
                }
                if case .success = verdict { heard() }
            }
        }
    }

    /// Datagrams received that did not count (no key yet, another source, forged, replayed).
    public var rejectedCount: Int { shared.state.withLock { $0.rejected } }

    /// The current replication session's key (`HeartbeatDatagram.exporterLabel`): datagrams are
    /// sent under it and only those made under it count.
    public func use(key: [UInt8]) {
        shared.state.withLock {
            $0.key = key
            $0.verifier.use(key: key)
        }
    }

    /// The address and port of a socket address (IPv4 or IPv6), without the rest of the structure.
    private static func identity(of address: [UInt8]) -> [UInt8] {
        guard address.count >= 2 else { return [] }
        let family = address.withUnsafeBytes { $0.load(as: sa_family_t.self) }
        switch Int32(family) {
        case AF_INET where address.count >= 8: return Array(address[2..<8])
        case AF_INET6 where address.count >= 24: return Array(address[2..<4] + address[8..<24])
        default: return address
        }
    }

    deinit { close() }

    /// Sends one heartbeat to the peer, when a session has given a key. Failures (no route, the
    /// peer's port closed) are the peer's silence to it, so they are ignored here.
    public func send() {
        let bytes: [UInt8]? = shared.state.withLock { state in
            guard let key = state.key else { return nil }
            state.sequence += 1
            return HeartbeatDatagram(vm: vm, sender: node, sequence: state.sequence).encoded(key: key)
        }
        guard let bytes else { return }
        _ = peer.withUnsafeBytes { address in
            bytes.withUnsafeBytes { payload in
                sendto(fd, payload.baseAddress, payload.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT),
                       address.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(address.count))
            }
        }
    }

    /// Stops receiving and closes the socket. Idempotent.
    public func close() {
        guard let running = thread else { return }
        thread = nil
        shutdown(fd, Int32(SHUT_RDWR))
        running.join()
        Glibc.close(fd)
    }
}
