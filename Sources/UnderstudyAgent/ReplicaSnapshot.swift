import Foundation
import UnderstudyDisk
import UnderstudyReplica

/// A copy of the replica at one committed epoch, for a failover drill: memory image, device
/// state and a frozen copy of each disk, taken while nothing writes the replica, so that a clone
/// can start from it while replication goes on.
///
/// Memory and device state go into the snapshot's directory (put it on tmpfs: QEMU maps the
/// memory copy as guest RAM). Each disk copy sits beside its replica disk, on its file system, so
/// that it can be a reflink; where it cannot, only the disk's data ranges are copied.
public struct ReplicaSnapshot: Sendable, Codable {
    /// Always true: the reply of the `snapshot` control command (a failure is a `ControlReply`).
    public var ok = true
    public var directory: String
    public var epoch: UInt64
    /// The memory copy; no file there when the snapshot was taken without memory (an inspection's).
    public var memoryPath: String
    /// The frozen disk copies, one per disk of the VM, in order; empty when it has none.
    public var diskPaths: [String]
    /// How the disks were copied (`sparse` if any of them could not be a reflink); nil without a disk.
    public var diskCopy: ImageCopy.Method?
    public var deviceStatePath: String
    /// When the replica published the epoch (its state file's modification time: written when the
    /// epoch's apply finished, right after its acknowledgement), in seconds since 1970. The backup
    /// cannot know when the primary captured it; this is the closest time it observed.
    public var committedAt: Double
    /// When the copy began, in seconds since 1970.
    public var takenAt: Double
    /// How long the copy kept the replica from applying checkpoints.
    public var pausedMilliseconds: Double

    /// How old the copied state was when it was taken.
    public var stateAgeMilliseconds: Double { max(0, takenAt - committedAt) * 1000 }

    /// Copies `store`'s committed checkpoint into the new directory `directory`, in one pass: for
    /// a store nobody else uses (this process opened it). Refuses a replica that is not committed;
    /// leaves nothing behind on failure. `BackupReceiver.snapshot` is the variant for a replica
    /// being applied to. Without `memory`, only the disk and the device state are copied.
    public static func take(of store: ReplicaStore, into directory: String, memory: Bool = true) throws -> ReplicaSnapshot {
        let started = ContinuousClock.now
        var snapshot = try prepare(of: store, into: directory)
        do {
            if memory { try snapshot.copyMemory(of: store) }
            try snapshot.finish(from: store, memoryWritten: memory ? [] : nil)
        } catch {
            snapshot.remove()
            throw error
        }
        snapshot.pausedMilliseconds = (ContinuousClock.now - started).seconds * 1000
        return snapshot
    }

    /// Checks that the replica is committed and creates the directory; copies nothing yet.
    static func prepare(of store: ReplicaStore, into directory: String) throws -> ReplicaSnapshot {
        try requireCommitted(store)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false,
                                                attributes: [.posixPermissions: 0o700])
        return ReplicaSnapshot(directory: directory, epoch: 0, memoryPath: "\(directory)/memory.img",
                               diskPaths: store.diskPaths.map { "\($0).\((directory as NSString).lastPathComponent)" },
                               deviceStatePath: "\(directory)/device-state", committedAt: 0, takenAt: 0, pausedMilliseconds: 0)
    }

    /// Copies the whole memory image. Only reads it, so it may run while checkpoints are applied
    /// to it, if `finish` then gets every page written meanwhile.
    func copyMemory(of store: ReplicaStore) throws {
        _ = try ImageCopy.copy(from: store.memoryPath, to: memoryPath)
    }

    /// Completes the snapshot with nothing writing the replica: brings the memory copy up to date
    /// with `memoryWritten` (the byte ranges written since `copyMemory` began; nil: no memory copy),
    /// copies the disk and the device state, and records the epoch they all are.
    mutating func finish(from store: ReplicaStore, memoryWritten: [Range<UInt64>]?) throws {
        try Self.requireCommitted(store)
        takenAt = Date().timeIntervalSince1970
        epoch = store.state.committedEpoch
        let attributes = try FileManager.default.attributesOfItem(atPath: store.statePath)
        committedAt = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? takenAt
        if let memoryWritten { try ImageCopy.update(memoryWritten, from: store.memoryPath, to: memoryPath) }
        for (source, copy) in zip(store.diskPaths, diskPaths) {
            let method = try ImageCopy.copy(from: source, to: copy)
            diskCopy = diskCopy == .sparse ? .sparse : method
        }
        guard FileManager.default.createFile(atPath: deviceStatePath, contents: Data(store.state.deviceState),
                                             attributes: [.posixPermissions: 0o600]) else {
            throw ReplicaError.io(operation: "create", path: deviceStatePath, errno: errno)
        }
    }

    private static func requireCommitted(_ store: ReplicaStore) throws {
        // A failed apply leaves memory ahead of the state: finish it, or copy nothing.
        try store.finishInterruptedApply()
        guard store.state.phase == .committed else {
            throw ReplicaError.notReady("the replica in \(store.directory) is \(store.state.phase), not committed: there is no "
                                        + "checkpoint to copy (a primary must finish its initial sync and one checkpoint first; a reset "
                                        + "replica waits for a full sync)")
        }
    }

    /// The device state, read back from its file.
    public func deviceState() throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: deviceStatePath) else {
            throw ReplicaError.io(operation: "read", path: deviceStatePath, errno: errno)
        }
        return [UInt8](data)
    }

    /// Removes the copies and the directory (with anything else put there).
    public func remove() {
        for path in diskPaths { unlink(path) }
        try? FileManager.default.removeItem(atPath: directory)
    }
}
