/// What happens to a backup's sessions, for whoever decides about failover.
public enum BackupEvent: Sendable {
    /// A frame arrived from the primary (a sign of life).
    case heard
    /// A primary's session was accepted.
    case sessionStarted
    /// The primary handed the VM over (switchover): activate from the last checkpoint, which
    /// is applied once the session has ended.
    case handover
}
