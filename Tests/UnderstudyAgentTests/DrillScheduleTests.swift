import Foundation
import Testing
@testable import UnderstudyAgent

/// The pure parts of scheduled drills: the shared periodic schedule (time passed in), putting a
/// drill off, one job at a time, the settings, and what status and metrics show.
@Suite("Drill schedule and results")
struct DrillScheduleTests {
    let start = ContinuousClock.now

    func at(_ seconds: Int) -> ContinuousClock.Instant { start + .seconds(seconds) }

    @Test func aDrillWithoutASlotIsPutOffWithoutMovingTheGrid() {
        var schedule = PeriodicSchedule(every: .seconds(3600), start: start)
        var started = schedule.start(at: at(3600))
        #expect(started)
        // Every slot of the host taken: tried again in 30 s.
        schedule.postpone(until: at(3630))
        #expect(!schedule.isRunning)
        #expect(schedule.delay(at: at(3610)) == .seconds(20))
        started = schedule.start(at: at(3629))
        #expect(!started, "put off")
        started = schedule.start(at: at(3630))
        #expect(started)
        schedule.finished(at: at(3700))
        #expect(schedule.due == at(7200), "the grid of the backup's start, not of the late drill")
        #expect(schedule.postponedUntil == nil)
        #expect(schedule.delay(at: at(7000)) == .seconds(200))
    }

    @Test func oneJobAtATimeTheLongestOverdueFirst() {
        var inspection = PeriodicSchedule(every: .seconds(60), start: start)
        var drill = PeriodicSchedule(every: .seconds(90), start: start)
        #expect(PeriodicSchedule.next(of: [inspection, drill], at: at(59)) == nil)
        #expect(PeriodicSchedule.next(of: [inspection, nil], at: at(60)) == 0)
        #expect(PeriodicSchedule.next(of: [nil, drill], at: at(60)) == nil)
        // Both due: the inspection (due at 60) before the drill (due at 90).
        #expect(PeriodicSchedule.next(of: [inspection, drill], at: at(95)) == 0)
        var started = inspection.start(at: at(95))
        #expect(started)
        // While the inspection runs the drill is still due; the runner starts it once the inspection ends.
        #expect(PeriodicSchedule.next(of: [inspection, drill], at: at(100)) == 1)
        inspection.finished(at: at(130))
        started = drill.start(at: at(130))
        #expect(started, "a drill due during the inspection runs after it, late, not skipped")
        #expect(PeriodicSchedule.next(of: [inspection, drill], at: at(185)) == 0, "the drill runs: only the inspection is due")
        drill.finished(at: at(200))
        #expect(drill.due == at(270))
    }

    @Test func drillEveryTakesAUnitAndNeedsAProbe() throws {
        let base = "[node]\nname = \"b\"\ncertificates = \"/c\"\n[peer]\nname = \"p\"\n[vm]\nid = \"v\"\nmemory_mib = 64\nkernel = \"/k\"\n"
        let none = try AgentConfiguration(document: TOMLDocument(parsing: base, source: "none.toml"))
        #expect(none.drill.every == nil && none.drill.drillsAtOnce == 1 && none.drill.slotDirectory == "/run/understudy/drill-slots")
        for (text, seconds) in [("24h", 86_400), ("90m", 5400), ("45s", 45), ("7d", 604_800)] {
            let parsed = try AgentConfiguration(document: TOMLDocument(
                parsing: base + "[drill]\nprobe = \"exec:pg_isready -h 10.0.0.5\"\nevery = \"\(text)\"\n[fleet]\ndrills_at_once = 2\n", source: "good.toml"))
            #expect(parsed.drill.every == .seconds(seconds), "\(text)")
            #expect(parsed.drill.drillsAtOnce == 2)
        }
        for (table, key, says) in [("every = \"24h\"", "drill.probe", "drill.every schedules drills"),
                                   ("probe = \"serial:x\"\nevery = \"24\"", "drill.every", "one of s, m, h, d"),
                                   ("probe = \"serial:x\"\nevery = \"1w\"", "drill.every", "one of s, m, h, d"),
                                   ("probe = \"serial:x\"\nevery = \"5s\"", "drill.every", "outside 10s to 365d"),
                                   ("probe = \"serial:x\"\nevery = 86400", "drill.every", "expected a string"),
                                   ("slot_dir = \"slots\"", "drill.slot_dir", "absolute"),
                                   ("probe = \"serial:x\"\n[fleet]\ndrills_at_once = 0", "fleet.drills_at_once", "1...64")] {
            do {
                _ = try AgentConfiguration(document: TOMLDocument(parsing: base + "[drill]\n" + table + "\n", source: "bad.toml"))
                Issue.record("accepted \(table)")
            } catch {
                #expect(error.key == key, "\(table): \(error)")
                #expect("\(error)".contains(says), "\(table): \(error)")
            }
        }
    }

    func outcome(passed: Bool, at: Double) -> DrillOutcome {
        DrillOutcome(at: at, passed: passed, reason: passed ? "the clone answered" : "the probe exec:pg_isready did not succeed within 60 seconds "
                     + "(last attempt: exit 2: no response)", probe: "exec:pg_isready -h 10.0.0.5", recoveryMs: passed ? 1840 : nil,
                     stateAgeMs: 12, epoch: 4411)
    }

    @Test func aFailedDrillIsAProblemInStatusAndInTheTable() throws {
        var drills = DrillStatus(everySeconds: 86_400, probe: "exec:pg_isready -h 10.0.0.5", since: 1_000_000)
        let passed = outcome(passed: true, at: 1_086_400)
        drills.record(passed)
        #expect(drills.problems(last: passed, now: 1_100_000).isEmpty)
        let failed = outcome(passed: false, at: 1_172_800)
        drills.record(failed)
        #expect(drills.runs == 2 && drills.failures == 1 && drills.lastSuccessAt == 1_086_400)
        let problems = drills.problems(last: failed, now: 1_172_900)
        #expect(problems.count == 1 && problems.first?.contains("the last drill FAILED at") == true, "\(problems)")
        #expect(problems.first?.contains("exit 2: no response") == true, "the reason is in the problem: \(problems)")

        var backup = BackupStatus(vm: "db-1", state: .serving)
        backup.drills = drills
        backup.lastDrill = failed
        backup.problems = problems
        let json = try JSONEncoder().encode(AgentStatus.backup(backup))
        let decoded = try JSONDecoder().decode(AgentStatus.self, from: json)
        #expect(decoded.backup == backup)
        let object = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        let last = try #require(object["lastDrill"] as? [String: Any], "\(object)")
        #expect(last["passed"] as? Bool == false && last["at"] as? Double == 1_172_800 && last["stateAgeMs"] as? Double == 12)
        let table = AgentStatus.backup(backup).humanReadable
        let lines = table.split(separator: "\n")
        #expect(lines.firstIndex { $0.hasPrefix("PROBLEM") } == 3, "right under role, vm and state: \(table)")
        #expect(table.contains("every 86400 s (exec:pg_isready -h 10.0.0.5): 2 runs, 1 failed"), "\(table)")
        #expect(table.contains("FAILED at"), "\(table)")
    }

    @Test func noDrillPassingForTwoIntervalsIsAProblemToo() {
        var drills = DrillStatus(everySeconds: 3600, probe: "tcp:10.0.0.5:5432", since: 0)
        #expect(drills.problems(last: nil, now: 7200).isEmpty)
        drills.waiting = "all 1 drill slot(s) of this host are taken by other drills"
        let problems = drills.problems(last: nil, now: 7300)
        #expect(problems.count == 1 && problems.first?.contains("no drill has passed for 7300 s") == true
                && problems.first?.contains("slot") == true, "\(problems)")
        drills.record(outcome(passed: true, at: 7400))
        #expect(drills.problems(last: nil, now: 7500).isEmpty)
        #expect(drills.waiting == nil)
    }

    @Test func metricsCarryTheLastDrill() {
        let metrics = AgentMetrics(vm: "db-1")
        metrics.drilled(outcome(passed: true, at: 1000))
        metrics.drilled(outcome(passed: false, at: 2000))
        let text = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(text.contains("understudy_drills_total{vm=\"db-1\",result=\"passed\"} 1"), "\(text)")
        #expect(text.contains("understudy_drills_total{vm=\"db-1\",result=\"failed\"} 1"))
        #expect(text.contains("understudy_drill_last_failed{vm=\"db-1\"} 1"))
        #expect(text.contains("understudy_drill_last_success_timestamp_seconds{vm=\"db-1\"} 1000"))
        #expect(text.contains("understudy_drill_recovery_seconds{vm=\"db-1\"} 1.84"))
        #expect(text.contains("understudy_drill_state_age_seconds{vm=\"db-1\"} 0.012"))
    }
}
