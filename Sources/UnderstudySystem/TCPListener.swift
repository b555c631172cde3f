import CUnderstudyShims
#if canImport(Glibc)
import Glibc
#endif

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
