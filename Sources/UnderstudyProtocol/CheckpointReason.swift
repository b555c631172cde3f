/// Why the primary took a checkpoint (status and metrics count each).
public enum CheckpointReason: String, Sendable, CaseIterable, Codable {
    /// The output gate held frames of the open epoch: a client waits for them.
    case output
    /// The interval passed (the longest an epoch runs when no output waits).
    case interval
    /// The first checkpoint of a session that catches the backup up after a lost link.
    case catchUp = "catch-up"
}
