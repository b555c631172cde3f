import Foundation
import UnderstudyReplica

/// A `ReplicaStorage` whose syncs of `memory.img` fail with EIO while `failing` is set: an apply
/// then copies its pages into memory and cannot publish them.
final class FailingMemorySyncStorage: ReplicaStorage, @unchecked Sendable {
    var failing = false
    private let real = POSIXReplicaStorage()

    func write(_ bytes: [UInt8], to path: String) throws(ReplicaError) { try real.write(bytes, to: path) }

    func sync(_ path: String) throws(ReplicaError) {
        if failing, path.hasSuffix("/memory.img") { throw .io(operation: "sync", path: path, errno: EIO) }
        try real.sync(path)
    }

    func rename(_ source: String, to destination: String) throws(ReplicaError) { try real.rename(source, to: destination) }

    func syncDirectory(_ directory: String) throws(ReplicaError) { try real.syncDirectory(directory) }
}
