/// Totals that close a sync or a checkpoint; the receiver compares them with what it staged.
public struct ContentSummary: Sendable, Equatable {
    public var epoch: UInt64
    public var pageCount: UInt64
    public var deviceStateBytes: UInt64
    public var diskWriteCount: UInt64
    /// SHA-256 over the SHA-256 of each content frame, in order (see `EpochDigest`).
    public var digest: [UInt8]

    public init(epoch: UInt64, pageCount: UInt64, deviceStateBytes: UInt64 = 0, diskWriteCount: UInt64 = 0,
                digest: [UInt8]) {
        self.epoch = epoch
        self.pageCount = pageCount
        self.deviceStateBytes = deviceStateBytes
        self.diskWriteCount = diskWriteCount
        self.digest = digest
    }
}
