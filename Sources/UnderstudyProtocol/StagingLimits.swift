/// What one checkpoint may make the backup stage, whatever its primary sends.
///
/// The backup holds a checkpoint in memory until it has arrived whole and verified, and then
/// decodes it into its journal; without these bounds a faulty or hostile primary could make it
/// stage without end. Pages need no limit of their own: each page of the guest may arrive at most
/// once per checkpoint, so a checkpoint carries at most the guest's page count. The defaults are
/// far above what a real guest produces (QEMU's device state is a few MiB at most; the default
/// catch-up journal is 256 MiB) and are listed in docs/PROTOCOL.md.
public struct StagingLimits: Sendable, Equatable {
    /// Device-state bytes in one checkpoint.
    public var deviceStateBytes: UInt64
    /// Disk data bytes in one checkpoint, once decompressed (zeroed ranges carry no data and do not count).
    public var diskBytes: UInt64
    /// Disk changes (writes, zeroed ranges, flushes) in one checkpoint.
    public var diskWrites: UInt64
    /// The same two bounds for the catch-up checkpoint, which replays every disk change of an
    /// outage: up to the primary's `catch_up_journal_mib` (at most 1 TiB), plus the checkpoints
    /// that were in flight.
    public var catchUpDiskBytes: UInt64
    public var catchUpDiskWrites: UInt64

    public init(deviceStateBytes: UInt64 = 64 << 20, diskBytes: UInt64 = 1 << 30, diskWrites: UInt64 = 1 << 22,
                catchUpDiskBytes: UInt64 = 1 << 41, catchUpDiskWrites: UInt64 = 1 << 32) {
        self.deviceStateBytes = deviceStateBytes
        self.diskBytes = diskBytes
        self.diskWrites = diskWrites
        self.catchUpDiskBytes = catchUpDiskBytes
        self.catchUpDiskWrites = catchUpDiskWrites
    }
}
