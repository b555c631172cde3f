/// The gate's firewall: rules tried in order, the first that matches a frame decides; a frame no
/// rule matches gets `defaultAction`. The empty policy allows everything (the gate without rules).
public struct GatePolicy: Sendable, Equatable {
    public var rules: [GateRule]
    public var defaultAction: GateRule.Action

    public static let allowAll = GatePolicy(rules: [], defaultAction: .allow)

    /// Refuses a rule that cannot be used (`GateRule.problem`), naming it by its index.
    public init(rules: [GateRule], defaultAction: GateRule.Action = .allow) {
        for (index, rule) in rules.enumerated() {
            if let problem = rule.problem { preconditionFailure("rule \(index) \(problem.field): \(problem.message)") }
        }
        self.rules = rules
        self.defaultAction = defaultAction
    }

    /// True when the policy lets every frame through untouched, so the gate can skip it.
    public var allowsEverything: Bool { rules.isEmpty && defaultAction == .allow }

    /// The index of the first rule matching `frame`, nil when none does (the rate limit aside).
    public func firstMatch(_ frame: FrameSummary, _ direction: FrameDirection) -> Int? {
        rules.firstIndex { $0.matches(frame, direction) }
    }
}
