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

extension UnixSocket {
    /// Why `listen(at:backlog:)` failed.
    public enum ListenError: Error, Equatable, Sendable, CustomStringConvertible {
        /// A system call failed (`operation` names it and the path).
        case system(operation: String, errno: Int32)
        /// The path exists and is not a socket: not ours to replace.
        case notASocket(String)
        /// A process still accepts connections at the path: not ours to take over.
        case inUse(String)

        public var description: String {
            switch self {
            case .system(let operation, let code): "\(operation): \(String(cString: strerror(code)))"
            case .notASocket(let path): "\(path) exists and is not a socket; refusing to replace it"
            case .inUse(let path): "another process is listening on \(path)"
            }
        }
    }

    /// Listens on a stream socket at `path` that only this user can connect to. A socket file
    /// nobody listens on any more (left by a process that died) is replaced; a live socket or any
    /// other file is refused. Returns the listening descriptor (close-on-exec).
    public static func listen(at path: String, backlog: Int32) throws(ListenError) -> Int32 {
        var info = stat()
        if lstat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFSOCK else { throw .notASocket(path) }
            if isLive(path) { throw .inUse(path) }
            guard unlink(path) == 0 || errno == ENOENT else { throw .system(operation: "remove the stale socket \(path)", errno: errno) }
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .system(operation: "create a socket for \(path)", errno: errno) }
        // Nobody can connect between bind and listen, so tightening the mode in between leaves no
        // window for another user (and umask is process-wide: not to be changed with threads running).
        guard bind(fd, path: path) == 0 else {
            let code = errno
            close(fd)
            throw .system(operation: "bind \(path)", errno: code)
        }
        guard chmod(path, 0o600) == 0, Glibc.listen(fd, backlog) == 0 else {
            let code = errno
            close(fd)
            unlink(path)
            throw .system(operation: "listen on \(path)", errno: code)
        }
        return fd
    }

    /// True when a process accepts connections at `path`.
    private static func isLive(_ path: String) -> Bool {
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard probe >= 0 else { return false }
        defer { close(probe) }
        return connect(probe, path: path) == 0
    }
}
