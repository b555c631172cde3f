import Foundation

/// What one inspection of the replica did: `understudy inspect --json` prints it, and the backup
/// keeps the last scheduled one for `status` and the metrics.
public struct InspectionReport: Sendable, Codable, Equatable {
    /// The command ran and exited with status 0.
    public var ok: Bool
    public var message: String
    public var vm: String
    public var command: String
    /// The checkpoint scanned; nil when the replica could not be copied.
    public var epoch: UInt64?
    /// How old the checkpoint was when it was copied (see `ReplicaSnapshot.stateAgeMilliseconds`).
    public var stateAgeMs: Double?
    /// "backup agent" or "replica directory".
    public var snapshotFrom: String?
    /// How long the copy kept the backup from applying checkpoints.
    public var replicaPausedMs: Double?
    /// How long taking the copy took in all (asking for it to having it).
    public var snapshotMs: Double?
    /// What was mounted, e.g. "/dev/loop3p1 (ext4) at DIR/p1".
    public var filesystems: [String]
    /// The memory image's path while the command ran (`--memory`); nil: not exposed.
    public var memoryImage: String?
    /// The command's exit status (128 + N when signal N ended it); nil: it did not run.
    public var exitStatus: Int32?
    /// When the inspection began, in seconds since 1970.
    public var startedAt: Double
    /// From the start of the copy to everything removed.
    public var durationMs: Double

    public init(ok: Bool, message: String, vm: String, command: String, epoch: UInt64? = nil, stateAgeMs: Double? = nil,
                snapshotFrom: String? = nil, replicaPausedMs: Double? = nil, snapshotMs: Double? = nil, filesystems: [String] = [], memoryImage: String? = nil,
                exitStatus: Int32? = nil, startedAt: Double, durationMs: Double = 0) {
        self.ok = ok
        self.message = message
        self.vm = vm
        self.command = command
        self.epoch = epoch
        self.stateAgeMs = stateAgeMs
        self.snapshotFrom = snapshotFrom
        self.replicaPausedMs = replicaPausedMs
        self.snapshotMs = snapshotMs
        self.filesystems = filesystems
        self.memoryImage = memoryImage
        self.exitStatus = exitStatus
        self.startedAt = startedAt
        self.durationMs = durationMs
    }
}
