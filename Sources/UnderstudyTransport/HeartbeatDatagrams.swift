import CUnderstudyShims
import Foundation
#if canImport(Glibc)
import Glibc
import UnderstudySystem
#endif

/// The second heartbeat path: small UDP datagrams between the two nodes, over addresses the
/// operator picks (ideally another link than the replication connection), so that one broken
/// link is not taken for a dead peer.
///
/// A datagram reads `USHB1 <vm> <sender> <sequence>`; one from another VM or another sender
/// is ignored. Datagrams are not authenticated: a forged one can only delay a failover (it
/// makes a dead peer look alive), never cause one, so keep this path on a trusted network.
public final class HeartbeatDatagrams: @unchecked Sendable {
    public let listen: Endpoint
    private let fd: Int32
    private let peer: [UInt8]
    private let outgoing: String
    private let expected: String
    private var sequence: UInt64 = 0
    private var thread: JoinableThread?

    /// Binds `listen` and starts a thread that calls `heard` for each datagram from `peerName`
    /// about `vm`; `send` goes to `peerAddress`. The receiving thread runs under real-time
    /// scheduling when permitted (`RealtimePriority`): a datagram that waits in the socket while
    /// its reader waits for a core would read as silence.
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
        outgoing = "USHB1 \(vm) \(node) "
        expected = "USHB1 \(vm) \(peerName) "
        let expected = self.expected
        thread = JoinableThread(name: "heartbeat-udp") {
            RealtimePriority.raiseCurrentThread()
            var buffer = [UInt8](repeating: 0, count: 512)
            while true {
                let count = recv(fd, &buffer, buffer.count, 0)
                if count < 0 {
                    if errno == EINTR { continue }
                    return
                }
                if count == 0 { return }
                if String(decoding: buffer[0..<count], as: UTF8.self).hasPrefix(expected) { heard() }
            }
        }
    }

    deinit { close() }

    /// Sends one heartbeat to the peer. Failures (no route, the peer's port closed) are the
    /// peer's silence to it, so they are ignored here.
    public func send() {
        sequence += 1
        let bytes = Array((outgoing + String(sequence)).utf8)
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
