import Foundation
import UnderstudyTransport
#if canImport(Glibc)
import Glibc
#endif

/// A TCP relay on loopback standing in for the link between two nodes, so that a test can cut
/// it the way a failed switch port does: `cut()` stops forwarding in both directions and keeps
/// every socket open (no RST, no FIN: the peers only see silence), and refuses nothing new but
/// forwards nothing either; `restore()` drops the stalled connections so the peers reconnect.
public final class LinkRelay: @unchecked Sendable {
    public let port: UInt16
    private let target: UInt16
    private let listener: Int32
    private let lock = NSLock()
    private var isCut = false
    private var stopping = false
    private var connections: [(Int32, Int32)] = []

    /// Listens on 127.0.0.1 (a free port) and forwards each connection to 127.0.0.1:`target`.
    public init(to target: UInt16) throws {
        self.target = target
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        self.listener = listener
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) } }
        guard bound == 0, listen(listener, 16) == 0 else { throw HarnessError("relay: cannot listen: \(String(cString: strerror(errno)))") }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) } }
        port = UInt16(bigEndian: address.sin_port)
        spawn { [self] in acceptLoop() }
    }

    /// Silence: nothing passes any more, in either direction, and no socket closes.
    public func cut() { lock.withLock { isCut = true } }

    /// The link is back: stalled connections are dropped (as their peers' timeouts would) and
    /// new ones pass.
    public func restore() {
        let stalled = lock.withLock {
            isCut = false
            defer { connections.removeAll() }
            return connections
        }
        for (a, b) in stalled {
            shutdown(a, Int32(SHUT_RDWR))
            shutdown(b, Int32(SHUT_RDWR))
        }
    }

    public func stop() {
        lock.withLock { stopping = true }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        restore()
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 { return }
            guard let server = try? Endpoint(host: "127.0.0.1", port: target).connect(timeoutMilliseconds: 2000) else {
                close(client)
                continue
            }
            lock.withLock { connections.append((client, server)) }
            spawn { [self] in pump(from: client, to: server) }
            spawn { [self] in pump(from: server, to: client) }
        }
    }

    private func pump(from source: Int32, to destination: Int32) {
        defer {
            shutdown(destination, Int32(SHUT_WR))
        }
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = read(source, &buffer, buffer.count)
            if count <= 0 { return }
            // While cut, hold the bytes back: they would have been lost on the wire.
            while lock.withLock({ isCut && !stopping }) { usleep(10_000) }
            if lock.withLock({ stopping }) { return }
            var offset = 0
            while offset < count {
                let written = buffer[offset..<count].withUnsafeBytes { send(destination, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if written <= 0 { return }
                offset += written
            }
        }
    }

    private func spawn(_ body: @escaping @Sendable () -> Void) {
        let thread = Thread(block: body)
        thread.start()
    }
}
