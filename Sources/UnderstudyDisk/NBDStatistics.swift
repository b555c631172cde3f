/// Counters of one NBD server since it started.
public struct NBDStatistics: Sendable, Equatable {
    /// Connections accepted.
    public var connections = 0
    /// Successful READ requests and the bytes they returned.
    public var reads = 0
    public var bytesRead: UInt64 = 0
    /// Successful WRITE requests and their data bytes.
    public var writes = 0
    public var bytesWritten: UInt64 = 0
    /// Successful FLUSH, TRIM and WRITE_ZEROES requests.
    public var flushes = 0
    public var trims = 0
    public var zeroes = 0
    /// Time spent making FLUSH requests durable (fdatasync): QEMU's stop of the VM sends one, so
    /// its growth during a checkpoint's pause is that pause's share.
    public var flushTime: Duration = .zero
    /// Requests answered with an error.
    public var errors = 0

    public init() {}
}
