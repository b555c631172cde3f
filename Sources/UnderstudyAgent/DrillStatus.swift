import Foundation

/// The backup's scheduled drills (`drill.every`) in `understudy status`: how often, how many, and
/// when the next one starts. The last one's outcome is `BackupStatus.lastDrill`.
public struct DrillStatus: Sendable, Codable, Equatable {
    public var everySeconds: Double
    public var probe: String
    public var runs = 0
    /// Drills whose clone did not recover, or that could not run.
    public var failures = 0
    /// When the last drill that passed began, in seconds since 1970.
    public var lastSuccessAt: Double?
    /// Seconds until the next drill (0 while one runs).
    public var nextInSeconds: Double?
    /// Why the drill that is due waits (every drill slot of the host taken); nil: it does not.
    public var waiting: String?
    /// When the schedule began (the agent became the backup), in seconds since 1970.
    public var since: Double

    public init(everySeconds: Double, probe: String, since: Double) {
        self.everySeconds = everySeconds
        self.probe = probe
        self.since = since
    }

    /// A drill that just ended.
    mutating func record(_ outcome: DrillOutcome) {
        runs += 1
        if outcome.passed { lastSuccessAt = outcome.at } else { failures += 1 }
        waiting = nil
    }

    /// Alert-worthy at `now` (seconds since 1970), given the last drill: it failed, or no drill has
    /// passed for two intervals (drills keep failing to start, or keep waiting for a slot).
    func problems(last: DrillOutcome?, now: Double) -> [String] {
        var problems: [String] = []
        if let last, !last.passed { problems.append("the last drill \(last.summary)") }
        let passedAt = lastSuccessAt ?? since
        if now - passedAt > 2 * everySeconds {
            problems.append(String(format: "no drill has passed for %.0f s (drill.every is %.0f s)%@", now - passedAt, everySeconds,
                                   waiting.map { ": \($0)" } ?? ""))
        }
        return problems
    }

    /// The row of `understudy status`'s table.
    var row: String {
        var text = String(format: "every %.0f s (%@): %d runs, %d failed", everySeconds, probe, runs, failures)
        if let waiting { text += "; waiting: \(waiting)" } else if let next = nextInSeconds { text += String(format: "; next in %.0f s", next) }
        return text
    }
}
