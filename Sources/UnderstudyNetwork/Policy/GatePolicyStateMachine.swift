import UnderstudyProtocol

/// Applies a `GatePolicy` frame by frame: the first matching rule's action (an allow rule over
/// its rate limit drops), the counters, and when a dropped frame deserves a log line. A value
/// with no clock of its own (the caller passes the time) and no I/O: the gate calls it under a
/// lock for every frame either way, before a guest frame is held for output commit.
public struct GatePolicyStateMachine: Sendable {
    public struct Verdict: Sendable, Equatable {
        public var allowed: Bool
        /// The rule that decided; nil: the default action did.
        public var rule: Int?
        /// Set when the frame was dropped and a log line about it is due: dropped frames are
        /// logged at most once per `reportInterval` per rule (the default action counts as one).
        public var report: Report?

        public init(allowed: Bool, rule: Int? = nil, report: Report? = nil) {
            self.allowed = allowed
            self.rule = rule
            self.report = report
        }
    }

    public struct Report: Sendable, Equatable {
        /// Drops by the same rule since its previous log line that were not logged.
        public var suppressed: UInt64

        public init(suppressed: UInt64) { self.suppressed = suppressed }
    }

    public static let reportInterval: Duration = .seconds(1)

    public private(set) var policy: GatePolicy
    private var counters: [GatePolicyStatistics.Rule]
    private var buckets: [TokenBucket?]
    /// One per rule, then one for the default action.
    private var lastReport: [ContinuousClock.Instant?]
    private var suppressed: [UInt64]
    private var unmatchedFrames: UInt64 = 0
    private var unmatchedBytes: UInt64 = 0

    public init(policy: GatePolicy = .allowAll, now: ContinuousClock.Instant) {
        self.policy = policy
        counters = policy.rules.enumerated().map { GatePolicyStatistics.Rule(name: $1.name ?? "rule \($0)", rule: $1.description) }
        buckets = policy.rules.map { rule in
            rule.rateLimit.map { TokenBucket(bytesPerSecond: $0.packetsPerSecond, burst: $0.burst, now: now) }
        }
        lastReport = Array(repeating: nil, count: policy.rules.count + 1)
        suppressed = Array(repeating: 0, count: policy.rules.count + 1)
    }

    /// Decides `frame` (`length` bytes) crossing the gate `direction` at `now`, and counts it.
    public mutating func filter(_ frame: FrameSummary, length: Int, _ direction: FrameDirection, now: ContinuousClock.Instant) -> Verdict {
        guard let index = policy.firstMatch(frame, direction) else {
            unmatchedFrames += 1
            unmatchedBytes += UInt64(length)
            guard policy.defaultAction == .deny else { return Verdict(allowed: true) }
            return Verdict(allowed: false, report: report(policy.rules.count, now: now))
        }
        counters[index].frames += 1
        counters[index].bytes += UInt64(length)
        var allowed = policy.rules[index].action == .allow
        if allowed, buckets[index] != nil {
            allowed = buckets[index]!.takeIfAvailable(1, now: now)
        }
        guard !allowed else { return Verdict(allowed: true, rule: index) }
        counters[index].deniedFrames += 1
        return Verdict(allowed: false, rule: index, report: report(index, now: now))
    }

    /// Swaps in `policy` at once. A rule equal to one of the old policy's keeps that rule's
    /// counters and rate-limit bucket (each old rule to at most one new rule); every other rule,
    /// and the unmatched-frame counters when the default action changes, start at zero.
    public mutating func replace(with policy: GatePolicy, now: ContinuousClock.Instant) {
        var next = GatePolicyStateMachine(policy: policy, now: now)
        var taken = Array(repeating: false, count: self.policy.rules.count)
        for (index, rule) in policy.rules.enumerated() {
            guard let old = self.policy.rules.indices.first(where: { !taken[$0] && self.policy.rules[$0] == rule }) else { continue }
            taken[old] = true
            next.counters[index].frames = counters[old].frames
            next.counters[index].bytes = counters[old].bytes
            next.counters[index].deniedFrames = counters[old].deniedFrames
            next.buckets[index] = buckets[old]
        }
        if policy.defaultAction == self.policy.defaultAction {
            next.unmatchedFrames = unmatchedFrames
            next.unmatchedBytes = unmatchedBytes
        }
        self = next
    }

    public var statistics: GatePolicyStatistics {
        GatePolicyStatistics(rules: counters, defaultAction: policy.defaultAction.rawValue,
                             unmatchedFrames: unmatchedFrames, unmatchedBytes: unmatchedBytes)
    }

    private mutating func report(_ slot: Int, now: ContinuousClock.Instant) -> Report? {
        if let last = lastReport[slot], now - last < Self.reportInterval {
            suppressed[slot] += 1
            return nil
        }
        defer { suppressed[slot] = 0 }
        lastReport[slot] = now
        return Report(suppressed: suppressed[slot])
    }
}
