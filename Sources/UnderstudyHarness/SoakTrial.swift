/// One trial of a soak as `bench-results/soak.json` lists it.
public struct SoakTrial: Codable, Sendable, Equatable {
    public var trial: Int
    public var kind: SoakKind
    /// Replies the client got beyond the surviving copy's counter.
    public var lostAcknowledgedOutput: Int
    /// Replies whose value was not above the previous one.
    public var counterRegressions: Int
    public var twoActiveCopies: Bool
    public var connectionSurvived: Bool
    /// `e2fsck -fn` of the surviving copy's ext4 disk; nil when the trial ended before it.
    public var fsckClean: Bool?
    /// From the fault to the client's next reply.
    public var failoverMilliseconds: Double?
    public var violations: [String]
    /// What kept the trial from checking everything (it threw, the guest never answered).
    public var problems: [String]
    public var seconds: Double
    public var summary: String
    public var keptLogs: String?

    enum CodingKeys: String, CodingKey {
        case trial, kind, violations, problems, seconds, summary
        case lostAcknowledgedOutput = "lost_acknowledged_output"
        case counterRegressions = "counter_regressions"
        case twoActiveCopies = "two_active_copies"
        case connectionSurvived = "connection_survived"
        case fsckClean = "fsck_clean"
        case failoverMilliseconds = "failover_ms"
        case keptLogs = "kept_logs"
    }

    public init(trial: Int, kind: SoakKind, outcome: ConsistencyHarness.Outcome, seconds: Double) {
        self.trial = trial
        self.kind = kind
        lostAcknowledgedOutput = outcome.lostAcknowledgedOutput
        counterRegressions = outcome.counterRegressions
        twoActiveCopies = outcome.twoActiveCopies
        connectionSurvived = outcome.connectionSurvived
        fsckClean = outcome.fsckClean
        failoverMilliseconds = outcome.failoverMilliseconds
        violations = outcome.violations
        problems = outcome.problems
        self.seconds = seconds
        summary = outcome.summary
        keptLogs = outcome.keptLogs
    }

    /// Whether the trial checked everything and found nothing wrong.
    public var passed: Bool { violations.isEmpty && problems.isEmpty }
}
