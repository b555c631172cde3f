import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `ReplicaStorage` on the host's file system.
public struct POSIXReplicaStorage: ReplicaStorage {
    public init() {}

    public func write(_ bytes: [UInt8], to path: String) throws(ReplicaError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .io(operation: "create", path: path, errno: errno) }
        defer { close(fd) }
        var done = 0
        while done < bytes.count {
            let written = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress! + done, $0.count - done) }
            if written < 0, errno == EINTR { continue }
            guard written > 0 else { throw .io(operation: "write", path: path, errno: written < 0 ? errno : ENOSPC) }
            done += written
        }
    }

    public func sync(_ path: String) throws(ReplicaError) {
        // Any descriptor of the file will do: fsync writes back the inode's dirty pages, those
        // dirtied through a shared mapping included.
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(operation: "open to sync", path: path, errno: errno) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw .io(operation: "sync", path: path, errno: errno) }
    }

    public func rename(_ source: String, to destination: String) throws(ReplicaError) {
        guard Glibc.rename(source, destination) == 0 else { throw .io(operation: "rename \(source) to", path: destination, errno: errno) }
    }

    public func syncDirectory(_ directory: String) throws(ReplicaError) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(operation: "open to sync", path: directory, errno: errno) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw .io(operation: "sync", path: directory, errno: errno) }
    }
}
