import Foundation

/// The last scheduled drill, as the backup's `status` shows it (`lastDrill`): when, whether the
/// clone recovered (and if not, why), how fast, and how old the state it recovered was.
public struct DrillOutcome: Sendable, Codable, Equatable {
    /// When the drill began, in seconds since 1970.
    public var at: Double
    public var passed: Bool
    /// Why it failed (or could not run), or what passed, in a sentence.
    public var reason: String
    public var probe: String
    /// From starting the clone to the probe's success; nil when it failed.
    public var recoveryMs: Double?
    /// How old the replica's state was when the drill copied it; nil when it could not copy it.
    public var stateAgeMs: Double?
    /// The checkpoint the clone started from.
    public var epoch: UInt64?

    public init(at: Double, passed: Bool, reason: String, probe: String, recoveryMs: Double? = nil, stateAgeMs: Double? = nil,
                epoch: UInt64? = nil) {
        self.at = at
        self.passed = passed
        self.reason = reason
        self.probe = probe
        self.recoveryMs = recoveryMs
        self.stateAgeMs = stateAgeMs
        self.epoch = epoch
    }

    /// What a drill that ran reported.
    public init(_ report: DrillReport, at: Double) {
        self.init(at: report.startedAt ?? at, passed: report.ok, reason: report.message, probe: report.probe, recoveryMs: report.recoveryMs,
                  stateAgeMs: report.stateAgeMs, epoch: report.epoch)
    }

    /// One line for `understudy status`.
    var summary: String {
        let when = Date(timeIntervalSince1970: at).formatted(.iso8601)
        var text = "\(passed ? "passed" : "FAILED") at \(when)"
        if let epoch, let stateAgeMs { text += String(format: " on checkpoint %llu (%.0f ms old)", epoch, stateAgeMs) }
        if let recoveryMs { text += String(format: ", recovered in %.0f ms", recoveryMs) }
        if !passed { text += ": \(reason)" }
        return text
    }
}
