import CUnderstudyShims
#if canImport(Glibc)
import Glibc
#endif

/// A `host:port` endpoint ("127.0.0.1:7000", "[::1]:7000", "backup.example:7000").
public struct Endpoint: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    public init(parsing text: String) throws(TransportError) {
        guard let colon = text.lastIndex(of: ":") else {
            throw .invalidAddress("\"\(text)\" has no port (expected host:port)")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, let port = UInt16(text[text.index(after: colon)...]) else {
            throw .invalidAddress("\"\(text)\" is not host:port with a port from 0 to 65535")
        }
        self.init(host: host, port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Resolves to socket addresses (getaddrinfo).
    package func resolve(passive: Bool, socketType: Int32 = Int32(SOCK_STREAM.rawValue)) throws(TransportError) -> [(family: Int32, address: [UInt8])] {
        var hints = addrinfo()
        hints.ai_socktype = socketType
        hints.ai_flags = passive ? AI_PASSIVE : 0
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let list else {
            throw .invalidAddress("cannot resolve \(self): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(list) }
        var result: [(Int32, [UInt8])] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = list
        while let entry = cursor {
            let bytes = UnsafeRawBufferPointer(start: entry.pointee.ai_addr, count: Int(entry.pointee.ai_addrlen))
            result.append((entry.pointee.ai_family, Array(bytes)))
            cursor = entry.pointee.ai_next
        }
        return result
    }
}

/// Thin helpers over BSD sockets. Sockets are blocking; every fd is close-on-exec.
enum TCPSocket {
    static func connect(to endpoint: Endpoint, timeoutMilliseconds: Int32) throws(TransportError) -> Int32 {
        var lastError: Int32 = ECONNREFUSED
        for (family, address) in try endpoint.resolve(passive: false) {
            let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { lastError = errno; continue }
            let status = address.withUnsafeBytes { raw in
                Glibc.connect(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
            }
            if status == 0 || errno == EINPROGRESS {
                var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                let ready = poll(&pfd, 1, timeoutMilliseconds)
                var soError: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length)
                if ready == 1 && soError == 0 {
                    do throws(TransportError) {
                        try configure(fd)
                    } catch {
                        close(fd)
                        throw error
                    }
                    return fd
                }
                lastError = ready == 0 ? ETIMEDOUT : soError
            } else {
                lastError = errno
            }
            close(fd)
        }
        throw .connectFailed(address: endpoint.description, errno: lastError)
    }

    /// Makes `fd` blocking again and sets TCP_NODELAY (checkpoint frames must not wait for Nagle).
    static func configure(_ fd: Int32) throws(TransportError) {
        let flags = fcntl(fd, F_GETFL)
        guard fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0 else { throw .system(operation: "fcntl", errno: errno) }
        var one: Int32 = 1
        guard setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw .system(operation: "setsockopt(TCP_NODELAY)", errno: errno)
        }
    }
}

/// A listening TCP socket.
public final class TCPListener: @unchecked Sendable {
    public let fd: Int32
    /// The bound endpoint (with the real port when 0 was asked for).
    public let endpoint: Endpoint

    public init(endpoint: Endpoint, backlog: Int32 = 16) throws(TransportError) {
        var lastError: Int32 = EADDRNOTAVAIL
        for (family, address) in try endpoint.resolve(passive: true) {
            let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { lastError = errno; continue }
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            let bound = address.withUnsafeBytes { raw in
                bind(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
            }
            guard bound == 0, listen(fd, backlog) == 0 else {
                lastError = errno
                Glibc.close(fd)
                continue
            }
            self.fd = fd
            self.endpoint = Endpoint(host: endpoint.host, port: TCPListener.boundPort(fd))
            return
        }
        throw .system(operation: "listen on \(endpoint)", errno: lastError)
    }

    /// Waits for a connection. Returns the connected fd and the peer's address as text.
    public func accept() throws(TransportError) -> (fd: Int32, peer: String) {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let fd = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { us_accept_cloexec(self.fd, $0, &length) }
        }
        guard fd >= 0 else {
            throw errno == EINVAL || errno == EBADF ? .closed("listener on \(endpoint) was closed") : .system(operation: "accept", errno: errno)
        }
        do throws(TransportError) {
            try TCPSocket.configure(fd)
        } catch {
            Glibc.close(fd)
            throw error
        }
        return (fd, TCPListener.describe(storage))
    }

    /// Stops accepting; a thread blocked in `accept` returns with `.closed`.
    public func close() {
        shutdown(fd, Int32(SHUT_RDWR))
    }

    deinit { Glibc.close(fd) }

    package static func boundPort(_ fd: Int32) -> UInt16 {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return withUnsafeBytes(of: storage) { raw in
            // sin_port and sin6_port both sit at offset 2, in network byte order.
            UInt16(raw[2]) << 8 | UInt16(raw[3])
        }
    }

    private static func describe(_ storage: sockaddr_storage) -> String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        return withUnsafeBytes(of: storage) { raw -> String in
            let port = UInt16(raw[2]) << 8 | UInt16(raw[3])
            if Int32(storage.ss_family) == AF_INET {
                inet_ntop(AF_INET, raw.baseAddress! + 4, &buffer, socklen_t(buffer.count))
                return "\(String(cBuffer: buffer)):\(port)"
            }
            inet_ntop(AF_INET6, raw.baseAddress! + 8, &buffer, socklen_t(buffer.count))
            return "[\(String(cBuffer: buffer))]:\(port)"
        }
    }
}
