import Foundation

/// The role this node last had, kept across restarts in `node.state_dir` so that a restarted
/// daemon never boots a second copy of a VM its peer took over.
public struct RoleRecord: Sendable {
    /// What the node was doing when the record was last written.
    public enum Entry: String, Sendable, Equatable {
        /// It ran the VM. Still this after a crash or a power loss: the VM may run on the peer now.
        case primary
        /// It ran the VM and stopped it in an orderly way, without handing it over: the VM runs nowhere.
        case primaryStopped = "primary-stopped"
        /// It kept the replica.
        case backup
    }

    /// The record's file: `<state_dir>/role`.
    public let path: String

    public init(directory: String) {
        path = (directory as NSString).appendingPathComponent("role")
    }

    /// The last entry; nil when this node never ran (no file).
    public func load() throws -> Entry? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let text = try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let entry = Entry(rawValue: text) else {
            throw RoleRecordError(path: path, message: "unreadable role record \"\(text)\" (expected primary, primary-stopped or backup); "
                                  + "remove it and start with --start-as to choose the role")
        }
        return entry
    }

    /// Replaces the record atomically and durably: a crash leaves the old entry or the new one.
    public func store(_ entry: Entry) throws {
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let temporary = path + ".new"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw RoleRecordError(path: temporary, message: String(cString: strerror(errno))) }
        let bytes = Array((entry.rawValue + "\n").utf8)
        let written = write(fd, bytes, bytes.count)
        let synced = fsync(fd)
        close(fd)
        guard written == bytes.count, synced == 0 else {
            unlink(temporary)
            throw RoleRecordError(path: temporary, message: "write failed: \(String(cString: strerror(errno)))")
        }
        guard rename(temporary, path) == 0 else { throw RoleRecordError(path: path, message: String(cString: strerror(errno))) }
        // The rename is durable only once the directory is.
        let directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryFD >= 0 {
            fsync(directoryFD)
            close(directoryFD)
        }
    }
}
