/// How one disk write travels.
public enum DiskWriteEncoding: UInt8, Sendable, CaseIterable {
    /// The written bytes as they are.
    case raw = 0
    /// An LZ4 block of the written bytes.
    case lz4 = 1
    /// The range reads as zeroes afterwards (WRITE_ZEROES, TRIM); no data follows.
    case zeroes = 2
    /// The guest flushed: every earlier write of the epoch must be durable once the epoch commits.
    /// Offset and length are 0; no data follows.
    case flush = 3
}
