/// How output relates to the backup's acknowledgements.
public enum ProtectionMode: String, Sendable, CaseIterable {
    /// Output commit: no frame leaves before the checkpoint that produced it is acknowledged
    /// (an HA pair: a failover loses nothing anyone saw).
    case synchronous
    /// Output leaves at once; the replica may lag by at most the recovery-point objective (a
    /// disaster-recovery replica over a WAN: a failover loses up to that much recent work).
    case asynchronous
}
