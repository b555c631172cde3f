import CUnderstudyShims
import UnderstudyTransport
#if canImport(Glibc)
import Glibc
#endif

/// The unix socket QEMU's `-netdev stream` connects to, and the framing on it: each Ethernet
/// frame is preceded by its length as a 4-byte big-endian integer.
enum GuestSocket {
    /// The longest frame accepted from QEMU: a 64 KiB packet plus headroom for headers. QEMU's
    /// own stream backend refuses anything above 65536 + 4096 bytes (NET_BUFSIZE).
    static let maxFrameLength = 65536 + 4096

    /// Listens at `path`, owner-only, for one connection at a time. A socket file nobody listens
    /// on any more (left by a previous run) is replaced; a live one is not taken over.
    static func listen(at path: String) throws(NetworkError) -> Int32 {
        var info = stat()
        if lstat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFSOCK else {
                throw .invalidConfiguration("\(path) exists and is not a socket; refusing to replace it")
            }
            if isLive(path) { throw .io(operation: "listen on", detail: path, errno: EADDRINUSE) }
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .io(operation: "socket", detail: "for \(path)", errno: errno) }
        // Nobody can connect between bind and listen, so tightening the mode in between leaves no
        // window in which another user could reach the guest's network (and umask is process-wide,
        // not something to change with other threads running).
        guard UnixSocket.bind(fd, path: path) == 0 else {
            let code = errno
            close(fd)
            throw .io(operation: "bind", detail: path, errno: code)
        }
        guard chmod(path, 0o600) == 0, Glibc.listen(fd, 1) == 0 else {
            let code = errno
            close(fd)
            unlink(path)
            throw .io(operation: "listen on", detail: path, errno: code)
        }
        return fd
    }

    /// True when a process accepts connections at `path`.
    private static func isLive(_ path: String) -> Bool {
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard probe >= 0 else { return false }
        defer { close(probe) }
        return UnixSocket.connect(probe, path: path) == 0
    }

    /// Writes all of `bytes`. Returns nil, or the errno of the failure (the connection is then
    /// useless: a frame may have been cut in the middle).
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int32? {
        var offset = 0
        while offset < bytes.count {
            // MSG_NOSIGNAL: a vanished QEMU must show up as an error here, not as SIGPIPE.
            let n = send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return n < 0 ? errno : EPIPE }
            offset += n
        }
        return nil
    }
}

/// One connection from QEMU. The descriptor is closed only when the last user lets go, so the
/// TAP forwarder can never write into a descriptor number that was closed and reused meanwhile.
final class GuestConnection: Sendable {
    let fd: Int32

    init(fd: Int32) { self.fd = fd }

    /// Wakes a thread blocked reading or writing; both then see the connection end.
    func shutdown() { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }

    deinit { close(fd) }
}

/// Reads length-prefixed frames from QEMU through a buffer, so that a burst of small frames
/// costs one system call rather than two per frame.
struct GuestFrameReader {
    enum Event: Equatable {
        case frame([UInt8])
        /// QEMU closed the connection (or it was shut down).
        case closed
        /// A length of 0 or above `GuestSocket.maxFrameLength`: the stream cannot be trusted any more.
        case malformed(length: UInt32)
        case failed(errno: Int32)
    }

    private var buffer = [UInt8](repeating: 0, count: 4 * (4 + GuestSocket.maxFrameLength))
    private var start = 0
    private var end = 0

    mutating func next(from fd: Int32) -> Event {
        while true {
            var needed = 4
            if end - start >= 4 {
                let length = UInt32(buffer[start]) << 24 | UInt32(buffer[start + 1]) << 16
                    | UInt32(buffer[start + 2]) << 8 | UInt32(buffer[start + 3])
                guard length > 0, length <= GuestSocket.maxFrameLength else { return .malformed(length: length) }
                needed = 4 + Int(length)
                if end - start >= needed {
                    let frame = Array(buffer[(start + 4)..<(start + needed)])
                    start += needed
                    return .frame(frame)
                }
            }
            if start == end {
                start = 0
                end = 0
            } else if buffer.count - start < needed {
                let pending = end - start
                // Safe: both ranges lie inside the buffer (start + pending == end <= count), and
                // memmove allows them to overlap.
                buffer.withUnsafeMutableBytes { raw in
                    _ = memmove(raw.baseAddress!, raw.baseAddress! + start, pending)
                }
                start = 0
                end = pending
            }
            // Safe: recv writes at most `count - end` bytes, starting at `end`, inside the buffer.
            let n = buffer.withUnsafeMutableBytes { raw in recv(fd, raw.baseAddress! + end, raw.count - end, 0) }
            if n > 0 {
                end += n
            } else if n == 0 {
                return .closed
            } else if errno != EINTR {
                return errno == ECONNRESET ? .closed : .failed(errno: errno)
            }
        }
    }
}
