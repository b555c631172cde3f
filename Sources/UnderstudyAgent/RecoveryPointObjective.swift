/// Asynchronous protection's bound on how far the replica may lag behind the guest.
public struct RecoveryPointObjective: Sendable, Equatable {
    public var objective: Duration
    /// Slow the guest (pause it briefly between checkpoints) while the lag is over the objective.
    public var throttleGuest: Bool

    public init(objective: Duration, throttleGuest: Bool) {
        self.objective = objective
        self.throttleGuest = throttleGuest
    }
}
