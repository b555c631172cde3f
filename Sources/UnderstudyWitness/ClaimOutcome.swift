/// The result of a claim on the witness key.
public enum ClaimOutcome: Sendable, Equatable {
    /// The key now names this node and lives as long as the lease; the term key holds the new term.
    case acquired
    /// Another node's claim stands: the key's current value.
    case heldBy(String)
    /// The active key was free (or this node's), but the term key did not hold the expected term:
    /// its current value (nil: absent). Nothing was written.
    case termIs(WitnessTerm?)
}
