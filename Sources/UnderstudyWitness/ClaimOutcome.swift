/// The result of a claim on the witness key.
public enum ClaimOutcome: Sendable, Equatable {
    /// The key now names this node and lives as long as the lease.
    case acquired
    /// Another node's claim stands: the key's current value.
    case heldBy(String)
}
