/// The file operations whose order makes the replica survive a power cut: the seam through which
/// tests record every write and sync, then "lose power" (keep only what was synced), or fail one
/// step with EIO or ENOSPC. Writes through the store's memory mappings bypass it; `sync` is what
/// makes them durable.
public protocol ReplicaStorage: Sendable {
    /// Creates or truncates the file at `path` and writes `bytes`; not yet durable.
    func write(_ bytes: [UInt8], to path: String) throws(ReplicaError)
    /// Makes the data of the file at `path` durable (fsync; covers writes through a mapping).
    func sync(_ path: String) throws(ReplicaError)
    /// Renames `source` over `destination`; not durable until `syncDirectory`.
    func rename(_ source: String, to destination: String) throws(ReplicaError)
    /// Makes the names in `directory` (creations, renames) durable.
    func syncDirectory(_ directory: String) throws(ReplicaError)
}
