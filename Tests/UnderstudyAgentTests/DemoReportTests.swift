import Foundation
import Testing
import UnderstudyAgent
import UnderstudyHarness

/// The demo's figures that come from arithmetic, not from a VM: the failover's breakdown read
/// from the backup's log, the round trip protection adds, and false alarms failing the verdict.
@Suite("understudy demo's report")
struct DemoReportTests {
    private let killed = Date(timeIntervalSince1970: 1_800_000_000)

    private func line(_ message: String, after milliseconds: Double) -> String {
        AgentLogHandler.jsonLine(level: .notice, label: "understudy", message: message, metadata: ["vm": "demo"], source: "test",
                                 time: killed.addingTimeInterval(milliseconds / 1000))
    }

    /// The log's times have millisecond resolution: each step is right within a millisecond.
    @Test("the breakdown runs kill → primary lost → taking over → VM running → reply; steps before the kill are not this failover's")
    func breakdownFromTheBackupsLog() throws {
        let log = [line("primary lost", after: -5000), line("taking over", after: -4990), "a human line, skipped",
                   line("primary lost", after: 212), line("the backup heard nothing", after: 213), line("taking over", after: 215),
                   line("VM running on this node", after: 290)].joined(separator: "\n")
        let timeline = FailoverTimeline(backupLog: log, killedAt: killed, firstReplyAt: killed.addingTimeInterval(0.51))
        #expect(abs(try #require(timeline.detectionMs) - 212) <= 1)
        #expect(abs(try #require(timeline.fenceMs) - 3) <= 1)
        #expect(abs(try #require(timeline.activationMs) - 75) <= 1)
        #expect(abs(try #require(timeline.resumeToReplyMs) - 220) <= 1)
        #expect(FailoverTimeline.times(of: "primary lost", in: log).filter { $0 < killed }.count == 1)

        let noTakeover = FailoverTimeline(backupLog: line("primary lost", after: 205), killedAt: killed, firstReplyAt: nil)
        #expect(noTakeover.detectionMs != nil && noTakeover.activationMs == nil && noTakeover.resumeToReplyMs == nil)
    }

    @Test("the added round trip is the protected p50 minus the unprotected p50")
    func roundTripAdded() throws {
        var report = DemoReport(protectedSeconds: 1, heartbeatTimeoutMs: 200)
        report.recordRoundTrips(protected: [.milliseconds(30), .milliseconds(26), .milliseconds(27)],
                                unprotected: [.milliseconds(2), .milliseconds(3), .milliseconds(1)])
        #expect(report.roundTripProtectedMsP50 == 27 && report.roundTripUnprotectedMsP50 == 2)
        #expect(report.roundTripAddedMsP50 == 25)
        report.recordRoundTrips(protected: [.milliseconds(30)], unprotected: [])
        #expect(report.roundTripAddedMsP50 == nil)
    }

    @Test("a backup that took the live primary for lost fails the demo, whatever the client saw")
    func falseAlarmsFail() {
        var report = DemoReport(protectedSeconds: 1, heartbeatTimeoutMs: 200)
        report.failoverMs = 300
        report.survivorCounter = 13
        report.survivorDiskAgrees = true
        report.falseAlarms = 1
        report.finish(before: Array(1...10), after: [11, 12, 13])
        #expect(!report.ok && report.message.contains("for lost"), "\(report.message)")
    }
}
