/// The gate policy's counters, for status and metrics. A rule's counters survive a reload that
/// keeps the rule exactly as it was (wherever it moved); a new or changed rule starts at zero.
public struct GatePolicyStatistics: Sendable, Codable, Equatable {
    public struct Rule: Sendable, Codable, Equatable {
        /// The rule's `name`, or "rule N" (its index, from 0).
        public var name: String
        /// What it matches and does (`GateRule.description`).
        public var rule: String
        /// Frames that matched it, allowed or not, and their bytes.
        public var frames: UInt64 = 0
        public var bytes: UInt64 = 0
        /// Frames it dropped: all it matched for a deny rule, those over the rate for an allow rule.
        public var deniedFrames: UInt64 = 0

        public init(name: String, rule: String, frames: UInt64 = 0, bytes: UInt64 = 0, deniedFrames: UInt64 = 0) {
            (self.name, self.rule, self.frames, self.bytes, self.deniedFrames) = (name, rule, frames, bytes, deniedFrames)
        }
    }

    public var rules: [Rule]
    public var defaultAction: String
    /// Frames no rule matched (they got the default action), and their bytes. Not counted while
    /// the policy has no rules and allows by default: the gate then skips it.
    public var unmatchedFrames: UInt64 = 0
    public var unmatchedBytes: UInt64 = 0

    public init(rules: [Rule], defaultAction: String, unmatchedFrames: UInt64 = 0, unmatchedBytes: UInt64 = 0) {
        (self.rules, self.defaultAction, self.unmatchedFrames, self.unmatchedBytes) = (rules, defaultAction, unmatchedFrames, unmatchedBytes)
    }

    /// Every frame the policy dropped.
    public var deniedFrames: UInt64 {
        rules.reduce(defaultAction == GateRule.Action.deny.rawValue ? unmatchedFrames : 0) { $0 + $1.deniedFrames }
    }
}
