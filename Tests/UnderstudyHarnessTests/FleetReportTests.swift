import Foundation
import Testing
import UnderstudyAgent
import UnderstudyHarness

/// The fleet demo's verdict on a counter client's replies, and its JSON, without a VM.
@Suite("fleet demo report")
struct FleetReportTests {
    @Test func repliesThatOnlyGoUpLoseNothing() {
        #expect(FleetReport.lostAcknowledgedOutput([]) == 0)
        #expect(FleetReport.lostAcknowledgedOutput([1, 2, 3, 7, 8]) == 0)
    }

    @Test func aGuestThatHandsOutAValueAgainLostEverythingFromThatValueOn() {
        // The guest went back to 3 after the client had 3, 4 and 5.
        #expect(FleetReport.lostAcknowledgedOutput([1, 2, 3, 4, 5, 3, 4, 5, 6]) == 3)
        #expect(FleetReport.lostAcknowledgedOutput([5, 5]) == 1)
        #expect(FleetReport.lostAcknowledgedOutput([9, 1, 2]) == 1)
    }

    @Test func theJSONHasTheKeysTheIssueNames() throws {
        var report = FleetReport()
        report.vms = ["vma", "vmb"]
        report.reprotectedMs = ["backup_host_h3_killed": 12_000]
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        let object = try #require(try JSONSerialization.jsonObject(with: encoder.encode(report)) as? [String: Any])
        for key in ["vms", "reprotected_ms", "lost_acknowledged_output", "two_active_copies", "drills_passed"] {
            #expect(object[key] != nil, "\(key) missing: \(object.keys.sorted())")
        }
        #expect((object["reprotected_ms"] as? [String: Int])?["backup_host_h3_killed"] == 12_000)
    }

    @Test func twoNodesReportingOneVMAsPrimaryAreTwoActiveCopies() {
        func record(_ vm: String, _ node: String, _ role: AgentStatus.Role) -> FleetRecord {
            FleetRecord(vm: vm, host: node, node: node, role: role, state: "protecting", peer: "x", publishedAt: 0)
        }
        let pair = [record("a", "h1", .primary), record("a", "h2", .backup), record("b", "h2", .primary)]
        #expect(FleetReport.vmsWithTwoPrimaries(pair, now: 0.5, freshWithin: 1).isEmpty)
        #expect(FleetReport.vmsWithTwoPrimaries(pair + [record("a", "h2", .primary)], now: 0.5, freshWithin: 1) == ["a"])
        #expect(FleetReport.vmsWithTwoPrimaries(pair + [record("b", "h3", .primary), record("a", "h4", .primary)], now: 0.5, freshWithin: 1)
                == ["a", "b"])
        // A killed primary's last entry, still there until its lease runs out, beside the backup
        // that took over: not two running copies.
        var killed = record("a", "h9", .primary)
        killed.publishedAt = -2.5
        #expect(FleetReport.vmsWithTwoPrimaries(pair + [killed], now: 0.5, freshWithin: 1).isEmpty)
    }

    @Test func aDrillCountsForItsVMOnlyWhenTheBackupPassedIt() {
        var passed = FleetRecord(vm: "a", host: "h2", node: "h2", role: .backup, state: "receiving", peer: "h1", publishedAt: 0)
        passed.lastDrillPassed = true
        var failed = FleetRecord(vm: "b", host: "h3", node: "h3", role: .backup, state: "receiving", peer: "h2", publishedAt: 0)
        failed.lastDrillPassed = false
        var primary = FleetRecord(vm: "c", host: "h1", node: "h1", role: .primary, state: "protecting", peer: "h2", publishedAt: 0)
        primary.lastDrillPassed = true
        #expect(FleetReport.vmsWithPassedDrill([passed, failed, primary]) == ["a"])
    }
}
