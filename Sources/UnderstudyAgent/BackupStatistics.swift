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
    /// The most recent checkpoints' commit timings (at most `window`).
    public var commitTimings: [CommitTiming] = []

    public static let window = 10_000

    public init() {}

    mutating func note(_ timing: CommitTiming) {
        commitTimings.append(timing)
        if commitTimings.count >= 2 * Self.window { commitTimings.removeFirst(commitTimings.count - Self.window) }
    }
}
