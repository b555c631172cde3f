/// What a failover drill found (`understudy drill --json` prints it with snake_case keys).
public struct DrillReport: Sendable, Codable {
    /// The probe succeeded before the timeout.
    public var ok: Bool
    /// Why the drill failed, or what passed, in a sentence.
    public var message: String
    public var vm: String
    public var probe: String
    /// The committed epoch the clone started from.
    public var epoch: UInt64
    /// How old the recovered state was when it was copied (see `ReplicaSnapshot.committedAt`).
    public var stateAgeMs: Double
    /// How long the copy kept the replica from applying checkpoints.
    public var replicaPausedMs: Double
    /// "backup agent" (the running agent copied its replica) or "replica directory" (no agent ran).
    public var snapshotFrom: String
    /// How the disk was frozen ("reflink" or "sparse"); nil without a disk.
    public var diskCopy: String?
    /// From starting the clone's QEMU to its guest running.
    public var timeToRunningMs: Double?
    /// From starting the clone's QEMU to the probe's success: the recovery time of a failover.
    public var recoveryMs: Double?
    /// The drill's network namespace, removed with everything else when the drill ended.
    public var sandbox: String
    /// Frames the clone sent into the sandbox, and frames it received from there.
    public var sandboxFramesFromClone: UInt64
    public var sandboxFramesToClone: UInt64
    /// When the drill began (the replica's copy), in seconds since 1970.
    public var startedAt: Double?
}
