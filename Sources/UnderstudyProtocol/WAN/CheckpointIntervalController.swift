import UnderstudySystem

/// Chooses the checkpoint interval between a minimum and a maximum so that the checkpoints'
/// wire bytes fit the link: the configured bandwidth cap, or the throughput the link achieved,
/// whichever is lower. A value with no clock: the I/O layer reports each checkpoint.
///
/// Demand is measured, not predicted: the wire bytes of each checkpoint over the interval it was
/// meant to cover (a moving average), i.e. what checkpoints at this interval need. A guest that rewrites the same pages sends fewer bytes per
/// second at a longer interval; one that streams through fresh memory does not, and then even
/// the maximum cannot help (`Reason.longest`): that is what the recovery-point alert is for.
public struct CheckpointIntervalController: Sendable, Equatable {
    /// Why the interval is what it is (status and metrics show it).
    public enum Reason: String, Sendable, CaseIterable {
        /// The shortest interval: the link carries what the guest dirties.
        case shortest
        /// Stretched so that the checkpoints fit the link.
        case fitted
        /// The longest interval, and still more than the link carries.
        case longest
        /// A catch-up checkpoint is on the link: the replica is behind by the outage until it is acknowledged.
        case catchingUp

        /// A sentence for status.
        public var explanation: String {
            switch self {
            case .shortest: "shortest interval: the link carries the dirty rate"
            case .fitted: "stretched so that each checkpoint fits the link's budget"
            case .longest: "longest interval: the link cannot carry the dirty rate even so"
            case .catchingUp: "catching up: the replica is behind by the outage until the catch-up checkpoint is acknowledged"
            }
        }
    }

    /// The interval now, why, and the rates that decided it.
    public struct Decision: Sendable, Equatable {
        public var interval: Duration
        public var reason: Reason
        /// Wire bytes per second the checkpoints needed (moving average).
        public var demandBytesPerSecond: Double
        /// Bytes per second the link may carry (nil: no cap and nothing measured yet).
        public var budgetBytesPerSecond: Double?

        public init(interval: Duration, reason: Reason, demandBytesPerSecond: Double, budgetBytesPerSecond: Double?) {
            self.interval = interval
            self.reason = reason
            self.demandBytesPerSecond = demandBytesPerSecond
            self.budgetBytesPerSecond = budgetBytesPerSecond
        }
    }

    public let minimum: Duration
    public let maximum: Duration
    /// The share of the budget checkpoints may fill; the rest absorbs bursts and heartbeats.
    public static let utilisation = 0.8
    /// Below this share of the budget the interval shrinks again.
    public static let shrinkBelow = 0.5
    /// Weight of the newest checkpoint in the demand average.
    static let weight = 0.3

    public private(set) var decision: Decision
    /// The span the demand average is made of.
    private var averagedSpan: Duration = .zero

    public init(minimum: Duration, maximum: Duration) {
        precondition(minimum >= .zero && maximum >= minimum)
        self.minimum = minimum
        self.maximum = maximum
        decision = Decision(interval: minimum, reason: .shortest, demandBytesPerSecond: 0, budgetBytesPerSecond: nil)
    }

    public var interval: Duration { decision.interval }

    /// Reports a checkpoint: `wireBytes` carried what the guest dirtied over `span` (the chosen
    /// interval); `budget` is what the link may carry now, in bytes per second.
    @discardableResult
    public mutating func checkpointSent(wireBytes: Int, span: Duration, budget: Double?) -> Decision {
        if span > .zero {
            let rate = Double(wireBytes) / span.seconds
            // Only checkpoints of the same interval are averaged: a stretched interval changes
            // the rate, and old samples would stretch it again.
            decision.demandBytesPerSecond = decision.demandBytesPerSecond == 0 || span != averagedSpan ? rate
                : Self.weight * rate + (1 - Self.weight) * decision.demandBytesPerSecond
            averagedSpan = span
        }
        decision.budgetBytesPerSecond = budget
        var interval = decision.interval
        if let budget, budget > 0 {
            let load = decision.demandBytesPerSecond / (budget * Self.utilisation)
            if load > 1 {
                // From a zero interval (back to back) stretching starts at a millisecond.
                interval = max(interval, .milliseconds(1)) * load
            } else if load < Self.shrinkBelow {
                interval = interval * 0.75
            }
        } else {
            // Nothing known about the link: back towards the shortest interval, step by step.
            interval = interval * 0.75
        }
        interval = min(maximum, max(minimum, interval))
        decision.interval = interval
        decision.reason = if interval == minimum { .shortest }
            else if interval == maximum, let budget, decision.demandBytesPerSecond > budget * Self.utilisation { .longest }
            else { .fitted }
        return decision
    }
}
