import UnderstudySystem

/// The summary of a soak, `bench-results/soak.json`: counts of trials, so that the three loss
/// columns (`lost_acknowledged_output`, `counter_regressions`, `two_active_copies`) read as
/// "trials in which it happened" and the target is zero in each.
public struct SoakReport: Codable, Sendable, Equatable {
    public var seed: UInt64
    public var durationSeconds: Double
    /// Trials run.
    public var trials: Int
    /// Trials per kind.
    public var byKind: [String: Int]
    /// Trials in which the client got a reply the surviving copy's counter does not reach.
    public var lostAcknowledgedOutput: Int
    /// Trials in which the client's counter went back or repeated.
    public var counterRegressions: Int
    /// Trials in which both nodes claimed the VM or the copy that lost it sent frames afterwards.
    public var twoActiveCopies: Int
    /// Trials in which the client's one TCP connection carried on across the fault.
    public var connectionSurvived: Int
    /// Trials whose surviving disk `e2fsck -fn` found clean (of those that got that far).
    public var fsckClean: Int
    /// Fault → next reply over the trials that moved the VM (all kinds but `backup_kill`).
    public var failoverMillisecondsP50: Double
    public var failoverMillisecondsP99: Double
    public var perTrial: [SoakTrial]

    enum CodingKeys: String, CodingKey {
        case seed, trials
        case durationSeconds = "duration_s"
        case byKind = "by_kind"
        case lostAcknowledgedOutput = "lost_acknowledged_output"
        case counterRegressions = "counter_regressions"
        case twoActiveCopies = "two_active_copies"
        case connectionSurvived = "connection_survived"
        case fsckClean = "fsck_clean"
        case failoverMillisecondsP50 = "failover_ms_p50"
        case failoverMillisecondsP99 = "failover_ms_p99"
        case perTrial = "per_trial"
    }

    public init(seed: UInt64, durationSeconds: Double, trials: [SoakTrial]) {
        self.seed = seed
        self.durationSeconds = durationSeconds
        self.trials = trials.count
        byKind = Dictionary(trials.map { ($0.kind.rawValue, 1) }, uniquingKeysWith: +)
        lostAcknowledgedOutput = trials.filter { $0.lostAcknowledgedOutput > 0 }.count
        counterRegressions = trials.filter { $0.counterRegressions > 0 }.count
        twoActiveCopies = trials.filter(\.twoActiveCopies).count
        connectionSurvived = trials.filter(\.connectionSurvived).count
        fsckClean = trials.filter { $0.fsckClean == true }.count
        let failovers = trials.filter(\.kind.movesTheVM).compactMap(\.failoverMilliseconds).sorted()
        failoverMillisecondsP50 = percentile(failovers, 0.5)
        failoverMillisecondsP99 = percentile(failovers, 0.99)
        perTrial = trials
    }
}
