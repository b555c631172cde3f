import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// At most `count` holders at once on this host, across processes: one file per slot in a
/// directory every contender names, each held with an exclusive `flock`. The kernel drops a lock
/// when its holder's descriptor closes, so a holder that crashes frees its slot by itself, and
/// nothing needs a daemon or a network.
///
/// The directory is created owner-only; one that others may write to is refused, since whoever
/// can create files there can take every slot.
public struct HostSlots: Sendable {
    /// One taken slot; `release` (or the process's end) frees it.
    public final class Slot: Sendable {
        public let index: Int
        private let descriptor: Int32

        fileprivate init(index: Int, descriptor: Int32) {
            self.index = index
            self.descriptor = descriptor
        }

        /// Frees the slot. Call once. Unlocks before the close: the lock belongs to the open file
        /// description, which a process being started holds too until its exec.
        public func release() {
            flock(descriptor, LOCK_UN)
            close(descriptor)
        }
    }

    public let directory: String
    public let count: Int

    public init(directory: String, count: Int) {
        self.directory = directory
        self.count = count
    }

    /// The file of slot `index`.
    public func path(of index: Int) -> String { "\(directory)/slot-\(index)" }

    /// Takes a free slot without waiting; nil when all `count` are held.
    public func tryTake() throws(HostCommand.Failure) -> Slot? {
        try prepareDirectory()
        for index in 0..<count {
            let descriptor = open(path(of: index), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard descriptor >= 0 else { throw HostCommand.Failure("cannot open \(path(of: index)): \(String(cString: strerror(errno)))") }
            if flock(descriptor, LOCK_EX | LOCK_NB) == 0 { return Slot(index: index, descriptor: descriptor) }
            let error = errno
            close(descriptor)
            guard error == EWOULDBLOCK else { throw HostCommand.Failure("cannot lock \(path(of: index)): \(String(cString: strerror(error)))") }
        }
        return nil
    }

    private func prepareDirectory() throws(HostCommand.Failure) {
        if mkdir(directory, 0o700) != 0, errno != EEXIST {
            // The parent (/run/understudy) may not exist yet; its mode is left as made.
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            } catch {
                throw HostCommand.Failure("cannot create \(directory): \(error.localizedDescription)")
            }
        }
        var info = stat()
        guard lstat(directory, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            throw HostCommand.Failure("\(directory) is not a directory")
        }
        guard info.st_uid == geteuid(), info.st_mode & 0o022 == 0 else {
            throw HostCommand.Failure("\(directory) may be written by others (owner \(info.st_uid), mode \(String(info.st_mode & 0o777, radix: 8))): "
                                      + "make it owner-only")
        }
    }
}
