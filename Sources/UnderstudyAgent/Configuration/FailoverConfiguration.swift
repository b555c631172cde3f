import Foundation

/// What the pair does when one node loses the other.
public struct FailoverConfiguration: Sendable, Equatable {
    /// The primary's course once the grace period after losing its backup has passed.
    public enum Policy: String, Sendable, CaseIterable {
        /// Release the held output and continue unprotected (with a witness: while holding the lease).
        case availability
        /// Keep holding output until a backup acknowledges a checkpoint again.
        case safety
    }

    public var automatic: Bool
    public var withoutWitness: Bool
    public var grace: Duration
    public var policy: Policy
    public var reconnect: Duration
    /// The primary: checkpoints in flight and no acknowledgement (nor stream progress) for this
    /// long counts as losing the backup (then `grace` and `policy` apply).
    public var acknowledgementTimeout: Duration

    public init(automatic: Bool = true, withoutWitness: Bool = false, grace: Duration = .seconds(1), policy: Policy = .availability,
                reconnect: Duration = .seconds(1), acknowledgementTimeout: Duration = .seconds(5)) {
        self.automatic = automatic
        self.withoutWitness = withoutWitness
        self.grace = grace
        self.policy = policy
        self.reconnect = reconnect
        self.acknowledgementTimeout = acknowledgementTimeout
    }
}
