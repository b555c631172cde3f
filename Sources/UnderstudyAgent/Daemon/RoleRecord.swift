import Foundation
import UnderstudySystem

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

        /// Why a node with this record, starting as the backup, must reset its replica first; nil
        /// when it may keep it. A node that ran the VM last holds, at best, a replica of the
        /// history from before its run (it booted the VM, or activated and so emptied it).
        public var replicaResetReason: String? {
            switch self {
            case .primary, .primaryStopped: "this node ran the VM last (role record \"\(rawValue)\"): its replica predates that run"
            case .backup: nil
            }
        }
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
        do {
            try DurableFile.replace(path, with: entry.rawValue + "\n")
        } catch {
            throw RoleRecordError(path: error.path, message: error.message)
        }
    }
}
