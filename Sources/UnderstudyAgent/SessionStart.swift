/// How a session brought the backup's replica up to date before checkpointing.
public enum SessionStart: Sendable, Equatable {
    /// A full synchronisation, and why (nil: a new backup, nothing to catch up from).
    case fullSync(reason: String?)
    /// One catch-up checkpoint on top of the replica's committed epoch `base`.
    case catchUp(base: UInt64)
}
