import CUnderstudyShims
#if canImport(Glibc)
import Glibc
#endif

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
