import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A directory only this agent's user can use, for the files QEMU (running as root) opens by
/// name: guest RAM and the device state of every checkpoint.
///
/// Its path is predictable (QEMU is told it, and a restarted agent must find its own leftovers)
/// and lies in world-writable /dev/shm, so someone else may have created it first: a file, a
/// symbolic link, or a directory of theirs or open to them. Only a real directory owned by this
/// process's user, with no permission for group or others, is accepted; anything else is refused,
/// named. Once accepted it stays so: /dev/shm is sticky, so no other user can rename or remove
/// the entry, and none can create anything inside it. Files in it are still created exclusively.
public struct PrivateDirectory: Sendable, Equatable {
    public let path: String

    /// Creates the directory (0700), or accepts the one an earlier run of this user left.
    public init(path: String) throws(QEMUError) {
        self.path = path
        if mkdir(path, 0o700) != 0, errno != EEXIST {
            throw .io("cannot create the private directory \(path): \(String(cString: strerror(errno)))")
        }
        var info = stat()
        guard lstat(path, &info) == 0 else { throw .io("cannot inspect \(path): \(String(cString: strerror(errno)))") }
        let remove = "remove it (another user may have put it there to read or change the guest's state)"
        switch info.st_mode & S_IFMT {
        case S_IFDIR: break
        case S_IFLNK: throw .io("\(path) is a symbolic link, where this agent's private directory belongs: \(remove)")
        default: throw .io("\(path) exists and is not a directory, where this agent's private directory belongs: \(remove)")
        }
        guard info.st_uid == geteuid() else {
            throw .io("\(path) belongs to user \(info.st_uid), not to this agent's user \(geteuid()): \(remove)")
        }
        guard info.st_mode & 0o077 == 0 else {
            throw .io("\(path) has mode \(String(info.st_mode & 0o7777, radix: 8)), not owner-only (0700): \(remove)")
        }
    }

    /// The path of `name` inside.
    public func file(_ name: String) -> String { "\(path)/\(name)" }

    /// Creates `name` anew (owner-only, exclusively, never through a link) and returns its open
    /// descriptor. What an earlier run left under that name goes first: only this user could
    /// have put it there.
    private func create(_ name: String, purpose: String) throws(QEMUError) -> Int32 {
        discard(name)
        return try ExclusiveFile.create(file(name), purpose: purpose)
    }

    /// Writes `bytes` as the new file `name` (see `create`).
    public func write(_ bytes: [UInt8], to name: String, purpose: String) throws(QEMUError) {
        let path = file(name)
        let fd = try create(name, purpose: purpose)
        defer { close(fd) }
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, $0.count - written) }
            if result < 0, errno == EINTR { continue }
            guard result > 0 else { throw .io("cannot write \(path): \(String(cString: strerror(errno)))") }
            written += result
        }
    }

    /// Removes the file `name` inside, if there (a link itself, never its target).
    public func discard(_ name: String) { unlink(file(name)) }
}
