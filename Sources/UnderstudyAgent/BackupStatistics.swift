/// Counters of a backup, read with `BackupReceiver.statistics`.
public struct BackupStatistics: Sendable {
    /// Sessions accepted, and sessions that have ended (their apply thread finished).
    public var sessions = 0
    public var sessionsEnded = 0
    public var syncPages = 0
    public var checkpointsCommitted = 0
    public var committedEpoch: UInt64 = 0
    public var pagesApplied = 0
    public var bytesReceived: UInt64 = 0
    public var lastSessionError: String?
}
