import Foundation

/// The backup's scheduled inspections in `understudy status`: how often, how many, and the last one.
public struct InspectionStatus: Sendable, Codable, Equatable {
    public var everySeconds: Double
    public var command: String
    public var runs = 0
    /// Runs whose command did not exit with status 0, or that could not run.
    public var failures = 0
    /// The last run's report (a run that could not start has no exit status and says why).
    public var last: InspectionReport?
    /// When the last run whose command exited with 0 began, in seconds since 1970.
    public var lastSuccessAt: Double?
    /// Seconds until the next run (0 while one runs).
    public var nextInSeconds: Double?

    public init(everySeconds: Double, command: String) {
        self.everySeconds = everySeconds
        self.command = command
    }

    /// The report of a run that just ended.
    mutating func record(_ report: InspectionReport) {
        runs += 1
        if report.ok { lastSuccessAt = report.startedAt } else { failures += 1 }
        last = report
    }

    /// The row of `understudy status`'s table.
    var row: String {
        var text = String(format: "every %.0f s (%@): %d runs, %d failed", everySeconds, command, runs, failures)
        if let last {
            let when = Date(timeIntervalSince1970: last.startedAt).formatted(.iso8601)
            text += "; last at \(when)"
            if let epoch = last.epoch, let age = last.stateAgeMs { text += String(format: " on checkpoint %llu (%.0f ms old)", epoch, age) }
            text += String(format: ", exit %@ in %.0f ms", last.exitStatus.map { "\($0)" } ?? "-", last.durationMs)
            if last.exitStatus == nil { text += " (\(last.message))" }
        }
        if let next = nextInSeconds { text += String(format: "; next in %.0f s", next) }
        return text
    }
}
