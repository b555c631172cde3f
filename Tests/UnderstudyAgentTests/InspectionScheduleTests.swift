import Foundation
import Testing
@testable import UnderstudyAgent

/// The pure parts of inspections: the schedule (time passed in), the command line, the `[inspect]` table.
@Suite("Inspection schedule and settings")
struct InspectionScheduleTests {
    let start = ContinuousClock.now

    /// Whether `schedule` starts one at `offset` seconds after `start` (outside `#expect`: it mutates).
    func starts(_ schedule: inout PeriodicSchedule, at offset: Int) -> Bool { schedule.start(at: start + .seconds(offset)) }

    @Test func theFirstInspectionIsDueOneIntervalAfterTheStart() {
        var schedule = PeriodicSchedule(every: .seconds(60), start: start)
        var started = starts(&schedule, at: 0)
        #expect(!started)
        #expect(schedule.delay(at: start + .seconds(10)) == .seconds(50))
        started = starts(&schedule, at: 59)
        #expect(!started)
        started = starts(&schedule, at: 60)
        #expect(started)
        #expect(schedule.isRunning)
    }

    @Test func oneRunsAtATimeAndTheNextFollowsOnTheGrid() {
        var schedule = PeriodicSchedule(every: .seconds(60), start: start)
        var started = starts(&schedule, at: 61)
        #expect(started)
        started = starts(&schedule, at: 62)
        #expect(!started, "one is running")
        schedule.finished(at: start + .seconds(75))
        #expect(schedule.due == start + .seconds(120), "one interval after the last due time, not after the finish")
        started = starts(&schedule, at: 119)
        #expect(!started)
        started = starts(&schedule, at: 120)
        #expect(started)
    }

    @Test func gridPointsMissedWhileOneRanAreSkippedNotMadeUp() {
        var schedule = PeriodicSchedule(every: .seconds(60), start: start)
        var started = starts(&schedule, at: 60)
        #expect(started)
        // A scan that took three and a half intervals.
        schedule.finished(at: start + .seconds(270))
        #expect(schedule.due == start + .seconds(300))
        started = starts(&schedule, at: 271)
        #expect(!started, "no burst of the missed ones")
        #expect(schedule.delay(at: start + .seconds(271)) == .seconds(29))
        started = starts(&schedule, at: 300)
        #expect(started)
        // Finishing exactly on a grid point: the next one is a whole interval later.
        schedule.finished(at: start + .seconds(360))
        #expect(schedule.due == start + .seconds(420))
    }

    @Test func theMountDirectoryReplacesThePlaceholderOrIsAppended() throws {
        let scan = try #require(InspectionCommand(["clamscan", "-r", "--infected"]))
        #expect(scan.arguments(directory: "/m") == ["clamscan", "-r", "--infected", "/m"])
        let placed = try #require(InspectionCommand(["debsums", "--root", "{}", "--config={}/etc/debsums"]))
        #expect(placed.arguments(directory: "/m") == ["debsums", "--root", "/m", "--config=/m/etc/debsums"],
                "every {} is replaced, and nothing appended")
        #expect(InspectionCommand([]) == nil)
        #expect(InspectionCommand([""]) == nil)
    }

    @Test func theProgramIsFoundOnThePathOrRefused() throws {
        let executables: Set<String> = ["/usr/bin/clamscan", "/opt/tools/check"]
        let scan = try #require(InspectionCommand(["clamscan", "-r"]))
        #expect(scan.executable(searchPath: "/usr/local/bin:/usr/bin:/bin", isExecutable: executables.contains) == "/usr/bin/clamscan")
        #expect(scan.executable(searchPath: "/usr/local/bin:/bin", isExecutable: executables.contains) == nil)
        let direct = try #require(InspectionCommand(["/opt/tools/check"]))
        #expect(direct.executable(searchPath: "", isExecutable: executables.contains) == "/opt/tools/check")
        let missing = try #require(InspectionCommand(["/opt/tools/gone"]))
        #expect(missing.executable(searchPath: "/opt/tools", isExecutable: executables.contains) == nil)
    }

    @Test func theInspectTableIsCheckedWithTheKeyNamed() throws {
        let base = "[node]\nname = \"b\"\ncertificates = \"/c\"\n[peer]\nname = \"p\"\n[vm]\nid = \"v\"\nmemory_mib = 64\nkernel = \"/k\"\n"
        let none = try AgentConfiguration(document: TOMLDocument(parsing: base, source: "none.toml"))
        #expect(none.inspection == InspectionConfiguration())
        #expect(none.inspection.every == nil)
        let good = try AgentConfiguration(document: TOMLDocument(
            parsing: base + "[inspect]\nevery_s = 3600\ncommand = [\"clamscan\", \"-r\"]\nmemory = true\ntimeout_s = 600\n", source: "good.toml"))
        #expect(good.inspection == InspectionConfiguration(every: .seconds(3600), command: InspectionCommand(["clamscan", "-r"]),
                                                           memory: true, timeout: .seconds(600)))
        for (table, key) in [("every_s = 3600", "inspect.command"), ("every_s = 1\ncommand = [\"true\"]", "inspect.every_s"),
                             ("command = []", "inspect.command"), ("command = \"clamscan -r\"", "inspect.command"),
                             ("timeout_s = 0", "inspect.timeout_s"), ("evry_s = 60", "inspect.evry_s")] {
            do {
                _ = try AgentConfiguration(document: TOMLDocument(parsing: base + "[inspect]\n" + table + "\n", source: "bad.toml"))
                Issue.record("accepted \(table)")
            } catch {
                #expect(error.key == key, "\(table): \(error)")
            }
        }
    }
}

/// What the backup reports of its scheduled inspections: status (JSON and the table) and metrics.
@Suite("Inspection reports")
struct InspectionReportTests {
    func report(ok: Bool, exit: Int32?, at startedAt: Double) -> InspectionReport {
        InspectionReport(ok: ok, message: exit == nil ? "the replica in /r is empty, not committed" : "clamscan exited with status \(exit!)",
                         vm: "web-1", command: "clamscan -r /m", epoch: exit == nil ? nil : 812, stateAgeMs: exit == nil ? nil : 6,
                         exitStatus: exit, startedAt: startedAt, durationMs: 2310)
    }

    @Test func statusCountsRunsAndFailuresAndKeepsTheLastSuccess() throws {
        var status = InspectionStatus(everySeconds: 3600, command: "clamscan -r")
        status.record(report(ok: true, exit: 0, at: 1000))
        status.record(report(ok: false, exit: 1, at: 4600))
        status.record(report(ok: false, exit: nil, at: 8200))
        #expect(status.runs == 3 && status.failures == 2)
        #expect(status.lastSuccessAt == 1000)
        #expect(status.last?.exitStatus == nil)
        var backup = BackupStatus(vm: "web-1", state: .serving)
        backup.inspection = status
        let decoded = try JSONDecoder().decode(AgentStatus.self, from: JSONEncoder().encode(AgentStatus.backup(backup)))
        #expect(decoded.backup?.inspection == status)
        let table = AgentStatus.backup(backup).humanReadable
        #expect(table.contains("every 3600 s (clamscan -r): 3 runs, 2 failed"), "\(table)")
        #expect(table.contains("exit - in 2310 ms (the replica in /r is empty, not committed)"), "a run that could not start says why: \(table)")
    }

    @Test func metricsCarryTheLastResult() {
        let metrics = AgentMetrics(vm: "web-1")
        metrics.inspected(report(ok: true, exit: 0, at: 1000))
        metrics.inspected(report(ok: false, exit: 1, at: 4600))
        let text = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(text.contains("understudy_inspections_total{vm=\"web-1\",result=\"success\"} 1"), "\(text)")
        #expect(text.contains("understudy_inspections_total{vm=\"web-1\",result=\"failure\"} 1"))
        #expect(text.contains("understudy_inspection_last_success_timestamp_seconds{vm=\"web-1\"} 1000"))
        #expect(text.contains("understudy_inspection_last_exit_status{vm=\"web-1\"} 1"))
        #expect(text.contains("understudy_inspection_last_duration_seconds{vm=\"web-1\"} 2.31"))
        #expect(text.contains("understudy_inspection_last_checkpoint_age_seconds{vm=\"web-1\"} 0.006"))
    }
}
