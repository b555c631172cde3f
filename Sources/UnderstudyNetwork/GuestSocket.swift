#if canImport(Glibc)
import Glibc
#endif

/// The unix socket QEMU's `-netdev stream` connects to, and the framing on it: each Ethernet
/// frame is preceded by its length as a 4-byte big-endian integer.
enum GuestSocket {
    /// The longest frame accepted from QEMU: a 64 KiB packet plus headroom for headers. QEMU's
    /// own stream backend refuses anything above 65536 + 4096 bytes (NET_BUFSIZE).
    static let maxFrameLength = 65536 + 4096

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
