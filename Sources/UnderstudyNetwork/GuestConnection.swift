#if canImport(Glibc)
import Glibc
#endif

/// One connection from QEMU. The descriptor is closed only when the last user lets go, so the
/// TAP forwarder can never write into a descriptor number that was closed and reused meanwhile.
final class GuestConnection: Sendable {
    let fd: Int32

    init(fd: Int32) { self.fd = fd }

    /// Wakes a thread blocked reading or writing; both then see the connection end.
    func shutdown() { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }

    deinit { close(fd) }
}
