import Foundation
import UnderstudySystem

/// The witness term this node last claimed, kept in `<state_dir>/witness-term` across restarts:
/// a node that comes back may resume its copy of the VM only if etcd still holds this term.
public struct WitnessTermRecord: Sendable {
    /// The record's file.
    public let path: String

    public init(directory: String) {
        path = (directory as NSString).appendingPathComponent("witness-term")
    }

    /// The recorded term; nil when this node never claimed one (no file).
    public func load() throws(WitnessError) -> WitnessTerm? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .record("\(path): \(error)")
        }
        let line = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let term = WitnessTerm(encoded: line[...]) else {
            // Guessing would let a stale copy resume: the operator decides (see docs/OPERATIONS.md).
            throw .record("\(path) holds \"\(line)\", not \"<number> <node>\"; remove it to have this node take over "
                          + "only as a backup, never resume")
        }
        return term
    }

    /// Replaces the record atomically and durably (synced before this returns).
    public func store(_ term: WitnessTerm) throws(WitnessError) {
        do {
            try DurableFile.replace(path, with: term.encoded + "\n")
        } catch {
            throw .record("\(error)")
        }
    }
}
