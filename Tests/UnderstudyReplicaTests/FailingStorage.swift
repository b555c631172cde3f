import Foundation
@testable import UnderstudyReplica

/// A `ReplicaStorage` that does every operation for real until operation `failAt` (counted from
/// `arm`), and from there fails each one with `code` (EIO, ENOSPC) until `heal`.
final class FailingStorage: ReplicaStorage, @unchecked Sendable {
    private let real = POSIXReplicaStorage()
    private var failAt: Int?
    private var code: Int32 = EIO
    private(set) var operations = 0

    func arm(failAt: Int, code: Int32) {
        operations = 0
        self.failAt = failAt
        self.code = code
    }

    func heal() { failAt = nil }

    func write(_ bytes: [UInt8], to path: String) throws(ReplicaError) {
        try step("write", path)
        try real.write(bytes, to: path)
    }

    func sync(_ path: String) throws(ReplicaError) {
        try step("sync", path)
        try real.sync(path)
    }

    func rename(_ source: String, to destination: String) throws(ReplicaError) {
        try step("rename \(source) to", destination)
        try real.rename(source, to: destination)
    }

    func syncDirectory(_ directory: String) throws(ReplicaError) {
        try step("sync", directory)
        try real.syncDirectory(directory)
    }

    private func step(_ operation: String, _ path: String) throws(ReplicaError) {
        defer { operations += 1 }
        if let failAt, operations >= failAt { throw .io(operation: operation, path: path, errno: code) }
    }
}
