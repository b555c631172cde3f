import Foundation
import Testing
@testable import UnderstudyAgent

/// The fleet view: how VMs are classified and ordered from their nodes' entries, and the entries' JSON.
@Suite("Fleet view")
struct FleetViewTests {
    let now = 1_800_000_000.0
    let day = 86_400.0

    private func primary(_ vm: String, on host: String = "hv-1", state: String = "protecting", peer: String = "node-b") -> FleetRecord {
        var record = FleetRecord(vm: vm, host: host, node: "node-\(host)", role: .primary, state: state, peer: peer, publishedAt: now)
        record.committedEpoch = 120
        record.pauseMillisecondsP99 = 2.5
        record.protectionMode = "synchronous"
        return record
    }

    /// A backup entry with a drill that passed `age` seconds ago.
    private func backup(_ vm: String, on host: String = "hv-2", drilled age: Double? = 3600, passed: Bool = true) -> FleetRecord {
        var record = FleetRecord(vm: vm, host: host, node: "node-\(host)", role: .backup, state: "serving", peer: "node-hv-1", publishedAt: now)
        record.committedEpoch = 119
        if let age {
            record.lastDrillAt = now - age
            record.lastDrillPassed = passed
            record.lastDrillRecoverySeconds = passed ? 1.4 : nil
        }
        return record
    }

    private func view(_ records: [FleetRecord], _ thresholds: FleetView.Thresholds = .init()) -> FleetView {
        FleetView(records: records, hosts: [], now: now, thresholds: thresholds)
    }

    private func only(_ records: [FleetRecord], _ thresholds: FleetView.Thresholds = .init()) throws -> FleetView.Row {
        let rows = view(records, thresholds).vms
        try #require(rows.count == 1)
        return rows[0]
    }

    @Test func aProtectingPrimaryWithARecentPassedDrillIsHealthy() throws {
        let row = try only([primary("web"), backup("web")])
        #expect(row.problem == .healthy && row.reason.isEmpty)
        #expect(row.primaryHost == "hv-1" && row.backupHost == "hv-2" && row.backupNode == "node-b")
        #expect(row.committedEpoch == 120, "the primary's acknowledged epoch")
        #expect(row.lastDrillPassed == true && row.lastDrillRecoverySeconds == 1.4, "the drill comes from the backup's entry")
    }

    @Test func aPrimaryNotProtectingIsUnprotected() throws {
        for state in ["connecting", "syncing", "holding", "unprotected"] {
            let row = try only([primary("web", state: state), backup("web")])
            #expect(row.problem == .unprotected, "\(state)")
            #expect(row.reason.contains("hv-1 is \(state)"), "\(row.reason)")
        }
        #expect(try only([primary("web", state: "switching over"), backup("web")]).problem == .healthy, "still protected while it hands over")
    }

    @Test func aVMWithoutARunningPrimaryIsUnprotected() throws {
        let orphan = try only([backup("web")])
        #expect(orphan.problem == .unprotected && orphan.reason.contains("no host runs it"), "\(orphan.reason)")
        #expect(orphan.primaryHost == nil && orphan.backupHost == "hv-2" && orphan.state == "serving")
        for state in ["fenced", "stopped", "switched over"] {
            let row = try only([primary("web", state: state), backup("web")])
            #expect(row.problem == .unprotected && row.reason.contains("hv-1 primary \(state)"), "a \(state) copy does not run it: \(row.reason)")
        }
    }

    @Test func twoHostsRunningItAsPrimaryIsUnprotected() throws {
        let row = try only([primary("web", on: "hv-1"), primary("web", on: "hv-3"), backup("web")])
        #expect(row.problem == .unprotected && row.reason.contains("2 hosts"), "\(row.reason)")
    }

    @Test func lagOverTheObjectiveOrTheThresholdIsLagging() throws {
        var objective = primary("web")
        objective.protectionMode = "asynchronous"
        objective.lagMilliseconds = 900
        objective.recoveryPointExceeded = true
        let judged = try only([objective, backup("web")])
        #expect(judged.problem == .lagging && judged.reason.contains("900 ms over the recovery point objective"), "\(judged.reason)")

        var slow = primary("web")
        slow.lagMilliseconds = 6000
        #expect(try only([slow, backup("web")]).problem == .lagging)
        #expect(try only([slow, backup("web")], .init(lag: .seconds(10))).problem == .healthy, "under a looser threshold")
        slow.lagMilliseconds = 4000
        #expect(try only([slow, backup("web")]).problem == .healthy, "under the default 5 s")
    }

    @Test func aFailedOrOldOrMissingDrillIsADrillProblem() throws {
        let failed = try only([primary("web"), backup("web", drilled: 600, passed: false)])
        #expect(failed.problem == .drill && failed.reason.contains("failed 10 min ago"), "\(failed.reason)")
        let old = try only([primary("web"), backup("web", drilled: 8 * day)])
        #expect(old.problem == .drill && old.reason.contains("8 d ago"), "\(old.reason)")
        let never = try only([primary("web"), backup("web", drilled: nil)])
        #expect(never.problem == .drill && never.reason == "no drill on record")
        #expect(try only([primary("web"), backup("web", drilled: nil)], .init(drillOverdue: nil)).problem == .healthy, "drills not checked")
        #expect(try only([primary("web"), backup("web", drilled: 6 * day)]).problem == .healthy, "within the week")
    }

    @Test func aFencedStaleCopyBesideARunningPrimaryIsFenced() throws {
        var stale = primary("web", on: "hv-3", state: "fenced")
        stale.detail = "node-hv-1 holds the witness key"
        let row = try only([primary("web"), stale, backup("web")])
        #expect(row.problem == .fenced && row.reason.contains("hv-3 is fenced: node-hv-1 holds"), "\(row.reason)")
        #expect(row.primaryHost == "hv-1", "the running copy is the primary shown")
    }

    @Test func theBackupShownIsThePrimarysPeerNotALostBackupThatStoodDown() throws {
        var stoodDown = backup("web", on: "hv-2", drilled: nil)
        stoodDown.state = "stood-down"
        let row = try only([primary("web", peer: "node-hv-3"), stoodDown, backup("web", on: "hv-3")])
        #expect(row.backupHost == "hv-3", "the spare that re-protected it")
        #expect(row.backupNode == "node-hv-3")
        #expect(row.problem == .healthy)
    }

    @Test func problemsComeFirstInTheirOrderThenByName() {
        var lagging = primary("b-lag")
        lagging.lagMilliseconds = 9000
        var fencedStale = primary("a-fenced", on: "hv-3", state: "fenced")
        fencedStale.detail = nil
        let records = [
            primary("z-ok"), backup("z-ok"), primary("a-ok"), backup("a-ok"),
            fencedStale, primary("a-fenced"), backup("a-fenced"),
            primary("c-drill"), backup("c-drill", drilled: nil),
            lagging, backup("b-lag"),
            primary("y-down", state: "holding"), primary("d-down", state: "syncing"),
        ]
        let rows = view(records).vms
        #expect(rows.map(\.vm) == ["d-down", "y-down", "b-lag", "c-drill", "a-fenced", "a-ok", "z-ok"])
        #expect(rows.map(\.problem) == [.unprotected, .unprotected, .lagging, .drill, .fenced, .healthy, .healthy])
        #expect(view(records).counts == [.unprotected: 2, .lagging: 1, .drill: 1, .fenced: 1, .healthy: 2])
    }

    @Test func theTableSummarisesAndShowsAnUnpublishedPeerByName() {
        let table = view([primary("web", peer: "node-b"), primary("db"), backup("db")]).statusTable
        let lines = table.split(separator: "\n").map(String.init)
        #expect(lines[0] == "2 VMs: 0 unprotected, 0 lagging, 1 drill overdue or failed, 0 fenced, 1 healthy")
        #expect(lines[1].hasPrefix("VM ") && lines[1].contains("PROBLEM") && lines[1].hasSuffix("REASON"))
        #expect(lines[2].hasPrefix("web ") && lines[2].contains("(node-b)"), "the peer publishes nothing: its node name in parentheses: \(lines[2])")
        #expect(lines[3].hasPrefix("db ") && lines[3].contains("hv-2") && lines[3].contains("passed 1 h ago (1.4 s)"), "\(lines[3])")
    }

    @Test func entriesRoundTripThroughJSON() throws {
        var record = backup("web")
        record.detail = "serving since 10:00"
        record.witnessTerm = 7
        let decoded = try JSONDecoder().decode(FleetRecord.self, from: JSONEncoder().encode(record))
        #expect(decoded == record)
        let host = HostCapacity(host: "hv-1", resources: HostResources(memoryTotalBytes: 1 << 34, memoryAvailableBytes: 1 << 33,
                                                                       replicaSpaceTotalBytes: 1 << 32, replicaSpaceFreeBytes: 1 << 31),
                                slotMemoryBytes: 1 << 30, maxPrimaries: 3, maxBackups: nil, records: [record], publishedAt: now)
        #expect(try JSONDecoder().decode(HostCapacity.self, from: JSONEncoder().encode(host)) == host)
        let json = try JSONSerialization.jsonObject(with: view([primary("web"), record]).statusJSON()) as? [String: Any]
        let rows = try #require(json?["vms"] as? [[String: Any]])
        #expect(rows.first?["problem"] as? String == "healthy" && rows.first?["backupHost"] as? String == "hv-2")
        #expect((json?["counts"] as? [String: Int])?["healthy"] == 1)
    }

    /// Entries are written by any node holding a fleet certificate: absurd numbers are shown, not trapped on.
    @Test func absurdNumbersInAnEntryDoNotCrashTheTable() {
        var lagging = primary("web")
        lagging.lagMilliseconds = 1e300
        var drilled = backup("web", drilled: -1e300)
        drilled.lastDrillRecoverySeconds = .infinity
        let table = view([lagging, drilled]).statusTable
        #expect(table.contains("web"))
        #expect(FleetView.age(.nan) == "0 s" && FleetView.age(1e300).hasSuffix(" d"))
    }

    @Test func theEntryOfAStatusCarriesWhatTheViewNeeds() {
        var status = PrimaryStatus(vm: "web", state: .protecting, detail: "ok")
        status.committedEpoch = 41
        status.lagMilliseconds = 12
        status.recoveryPointExceeded = false
        status.pauseMillisecondsP99 = 3.25
        status.protectionMode = "asynchronous"
        status.witnessTerm = 3
        let record = FleetRecord(status: .primary(status), host: "hv-1", node: "a", peer: "b", publishedAt: now)
        #expect(record.role == .primary && record.state == "protecting" && record.detail == "ok" && record.peer == "b")
        #expect(record.committedEpoch == 41 && record.lagMilliseconds == 12 && record.recoveryPointExceeded == false)
        #expect(record.pauseMillisecondsP99 == 3.25 && record.protectionMode == "asynchronous" && record.witnessTerm == 3)
        var backupStatus = BackupStatus(vm: "web", state: .serving)
        backupStatus.committedEpoch = 40
        let backupRecord = FleetRecord(status: .backup(backupStatus), host: "hv-2", node: "b", peer: "a", publishedAt: now)
        #expect(backupRecord.role == .backup && backupRecord.state == "serving" && backupRecord.committedEpoch == 40)
        #expect(backupRecord.lastDrillAt == nil && backupRecord.lastDrillPassed == nil, "no drill ran")
        backupStatus.lastDrill = DrillOutcome(at: now - 30, passed: false, reason: "exit 2", probe: "exec:pg_isready", recoveryMs: 1500)
        let drilled = FleetRecord(status: .backup(backupStatus), host: "hv-2", node: "b", peer: "a", publishedAt: now)
        #expect(drilled.lastDrillAt == now - 30 && drilled.lastDrillPassed == false && drilled.lastDrillRecoverySeconds == 1.5,
                "the backup's last drill reaches its entry")
        #expect(record.significant == FleetRecord(status: .primary(status), host: "hv-1", node: "a", peer: "b", publishedAt: now + 5).significant,
                "time alone is no change")
        status.committedEpoch = 42
        status.state = .holding
        #expect(record.significant != FleetRecord(status: .primary(status), host: "hv-1", node: "a", peer: "b", publishedAt: now).significant,
                "a state change is one")
    }
}
