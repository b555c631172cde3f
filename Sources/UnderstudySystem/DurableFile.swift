import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Small files that must survive a crash or a power loss whole: a node's role and witness term.
public enum DurableFile {
    /// Why a replacement failed: the path and the system's message.
    public struct Failure: Error, CustomStringConvertible {
        public let path: String
        public let message: String
        public var description: String { "\(path): \(message)" }
    }

    /// Replaces `path` with `contents` atomically and durably: the new file is written and synced
    /// under a temporary name, renamed over the old one, and the directory synced (the rename is
    /// durable only then). A crash at any point leaves the old contents or the new ones. Creates
    /// the directory (owner only) if needed.
    public static func replace(_ path: String, with contents: String) throws(Failure) {
        let directory = (path as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw Failure(path: directory, message: "\(error)")
        }
        let temporary = path + ".new"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Failure(path: temporary, message: String(cString: strerror(errno))) }
        let bytes = Array(contents.utf8)
        let written = write(fd, bytes, bytes.count)
        let synced = fsync(fd)
        close(fd)
        guard written == bytes.count, synced == 0 else {
            let message = String(cString: strerror(errno))
            unlink(temporary)
            throw Failure(path: temporary, message: "write failed: \(message)")
        }
        guard rename(temporary, path) == 0 else { throw Failure(path: path, message: String(cString: strerror(errno))) }
        let directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directoryFD >= 0 else { throw Failure(path: directory, message: String(cString: strerror(errno))) }
        defer { close(directoryFD) }
        guard fsync(directoryFD) == 0 else { throw Failure(path: directory, message: "sync failed: \(String(cString: strerror(errno)))") }
    }
}
