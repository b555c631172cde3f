import Foundation
import Testing
import UnderstudyAgent
import UnderstudyHarness
import UnderstudyTestTags

/// `understudy demo`, the README's first command, as a user runs it (short), and the arithmetic
/// of its verdict.
@Suite("understudy demo", .tags(.vm), .skippedInQuickLoop)
struct DemoTests {
    /// A real VM protected by two agents in their own namespaces, a drill, the primary killed:
    /// the JSON report must show checkpoints, pauses, a drill that passed, a failover the
    /// client's TCP connection survived, nothing the client had received lost; and nothing of the
    /// demo may be left behind.
    @Test func theShortDemoFailsOverWithNothingLost() throws {
        let started = ContinuousClock.now
        let result = try runCLI(["demo", "--short", "--json"])
        let seconds = (ContinuousClock.now - started).seconds
        print("demo --short --json: exit \(result.status) after \(Int(seconds)) s\n\(result.stdout)")
        #expect(result.status == 0, "\(result.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any],
                                  "no JSON report: \(result.stdout) \(result.stderr)")
        #expect((report["checkpoints"] as? Int ?? 0) > 0, "\(report)")
        #expect((report["pause_ms_p50"] as? Double ?? 0) > 0, "\(report)")
        #expect((report["pause_ms_p99"] as? Double ?? 0) >= (report["pause_ms_p50"] as? Double ?? .infinity), "\(report)")
        #expect((report["failover_ms"] as? Double ?? 0) > 0, "\(report)")
        #expect(report["lost_acknowledged_output"] as? Int == 0, "\(report)")
        #expect(report["connection_survived"] as? Bool == true, "\(report)")
        #expect(report["drill_ok"] as? Bool == true, "\(report)")
        #expect((report["client_replies_after_failover"] as? Int ?? 0) > 0, "\(report)")
        #expect(report["survivor_disk_agrees"] as? Bool == true, "\(report)")
        #expect(report["heartbeat_timeout_ms"] as? Double == 200, "\(report)")
        #expect(report["false_alarms"] as? Int == 0, "\(report)")
        #expect((report["pause_ms_max"] as? Double ?? 0) >= (report["pause_ms_p99"] as? Double ?? .infinity), "\(report)")
        #expect(report["round_trip_added_ms_p50"] as? Double != nil, "\(report)")
        let breakdown = try #require(report["failover_breakdown"] as? [String: Double], "\(report)")
        #expect(Set(breakdown.keys) == ["detection_ms", "fence_ms", "activation_ms", "resume_to_reply_ms"], "\(report)")
        #expect(report["ok"] as? Bool == true, "\(report)")

        // Everything it made is named after its process id, which its progress shows.
        let pid = try #require(result.stderr.firstMatch(of: /usnode-(\d+)-0/).map { String($0.1) }, "\(result.stderr)")
        var left: [String] = []
        for namespace in ["usnet-\(pid)", "usnode-\(pid)-0", "usnode-\(pid)-1"] where FileManager.default.fileExists(atPath: "/var/run/netns/\(namespace)") {
            left.append("namespace \(namespace)")
        }
        for link in ["usbr\(pid)", "usvh\(pid)", "usup\(pid)0", "usup\(pid)1"] where FileManager.default.fileExists(atPath: "/sys/class/net/\(link)") {
            left.append("interface \(link)")
        }
        for file in (try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? [] where file.hasPrefix("understudy-demo\(pid)-") {
            left.append("/dev/shm/\(file)")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-demo-\(pid)").path
        if FileManager.default.fileExists(atPath: directory) { left.append(directory) }
        #expect(left.isEmpty, "left behind: \(left)")
        #expect(seconds < 120, "the short demo took \(Int(seconds)) s")
    }

    /// The count of lost output comes from what the client saw on either side of the kill: values
    /// the survivor hands out again, or that lie beyond its counter, were lost.
    @Test func lostOutputCountsWhatTheSurvivorDoesNotContinueFrom() {
        func verdict(before: [UInt64], after: [UInt64], survivor: UInt64?) -> DemoReport {
            var report = DemoReport(protectedSeconds: 1, heartbeatTimeoutMs: 200)
            report.failoverMs = after.isEmpty ? nil : 1500
            report.survivorCounter = survivor
            report.survivorDiskAgrees = survivor != nil
            report.finish(before: before, after: after)
            return report
        }
        let clean = verdict(before: Array(1...10), after: [11, 12, 13], survivor: 13)
        #expect(clean.lostAcknowledgedOutput == 0 && clean.ok)
        let repeated = verdict(before: Array(1...10), after: [8, 9, 10, 11], survivor: 11)
        #expect(repeated.lostAcknowledgedOutput == 3 && !repeated.ok, "\(repeated.message)")
        let behind = verdict(before: Array(1...10), after: [], survivor: 7)
        #expect(behind.lostAcknowledgedOutput == 3 && !behind.ok, "\(behind.message)")
        let silent = verdict(before: Array(1...10), after: [], survivor: nil)
        #expect(silent.lostAcknowledgedOutput == 0 && !silent.ok && silent.message.contains("no reply"), "\(silent.message)")
    }
}
