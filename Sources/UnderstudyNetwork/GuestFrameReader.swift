#if canImport(Glibc)
import Glibc
#endif

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
