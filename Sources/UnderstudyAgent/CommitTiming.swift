/// How long the backup took to make one checkpoint durable, and then to apply it: the backup's
/// share of the primary's acknowledgement latency (status and benchmarks).
public struct CommitTiming: Sendable, Equatable {
    /// Decoding the staged pages into the journal, checksumming and sealing it, and syncing it:
    /// everything between the checkpoint's arrival and its ACK.
    public var seal: Duration
    /// The part of `seal` spent in the journal's fsync.
    public var journalSync: Duration
    /// Copying the sealed journal into the replica and publishing its state (after the ACK, but
    /// the next checkpoint's seal waits for it).
    public var apply: Duration

    public init(seal: Duration, journalSync: Duration, apply: Duration) {
        self.seal = seal
        self.journalSync = journalSync
        self.apply = apply
    }
}
