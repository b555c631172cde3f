import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Creation of a file that must be new: never one that someone created first, never through a
/// symbolic link. For files QEMU, running as root, maps or reads (guest RAM, device state).
enum ExclusiveFile {
    /// Creates `path` owner-only (0600) with O_EXCL | O_NOFOLLOW and returns its open descriptor
    /// (read-write, close-on-exec). A file or symbolic link already at `path` is refused, named.
    static func create(_ path: String, purpose: String) throws(QEMUError) -> Int32 {
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        if fd >= 0 { return fd }
        let failure = errno
        guard failure == EEXIST else { throw .io("cannot create \(purpose) \(path): \(String(cString: strerror(failure)))") }
        var info = stat()
        let what = lstat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFLNK ? "a symbolic link" : "a file"
        throw .io("\(path) already exists (\(what)); \(purpose) is only ever created as a new file, since whoever made it "
                  + "could read or change it: remove it")
    }
}
