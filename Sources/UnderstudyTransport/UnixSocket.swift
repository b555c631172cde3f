import CUnderstudyShims
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Connects and binds unix-domain stream sockets by path (QMP, the preload library, the
/// agent's control socket). Both return 0 or -1 with errno set, like the calls they wrap.
public enum UnixSocket {
    public static func connect(_ fd: Int32, path: String) -> Int32 {
        withAddress(path) { Glibc.connect(fd, $0, $1) }
    }

    public static func bind(_ fd: Int32, path: String) -> Int32 {
        withAddress(path) { Glibc.bind(fd, $0, $1) }
    }

    private static func withAddress(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            errno = ENAMETOOLONG
            return -1
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }
}
