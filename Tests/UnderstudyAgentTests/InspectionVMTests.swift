import Foundation
import Testing
import UnderstudyAgent
import UnderstudyHarness
import UnderstudySystem
import UnderstudyTestTags
import UnderstudyTransport

/// `understudy inspect` and scheduled inspections on the backup of the counter-service guest,
/// whose every counter value is appended, with fsync, to `counter.log` on its ext4 disk before
/// the guest replies: a value the client got is on the replica's disk at a committed checkpoint.
@Suite("understudy inspect on a protected VM", .serialized, .tags(.vm), .skippedInQuickLoop)
struct InspectionVMTests {
    /// The issue's two checks, "inspect finds a marker file the guest wrote a moment ago, at a
    /// checkpoint no older than the interval plus the snapshot time" and "a clamav scan reports an
    /// infection in a file the guest wrote", and the primary's pauses with and without inspections.
    @Test func inspectSeesWhatTheGuestJustWroteAndClamscanFindsItsSignature() throws {
        let metricsPort = LoopbackPorts.free(span: 1)
        let pair = try ProtectedPair(primaryExtra: "[metrics]\nlisten = \"127.0.0.1:\(metricsPort)\"")
        defer { pair.remove() }
        let client = CounterClient(network: pair.network)
        client.start()
        defer { client.stop() }
        try #require(client.waitForReplies(20, timeout: .seconds(120)), "the service never answered: \(client.errors); see \(pair.directory)")
        let protected = ContinuousClock.now + .seconds(120)
        while (pair.backupCommittedEpoch() ?? 0) < 10, ContinuousClock.now < protected { Thread.sleep(forTimeInterval: 0.1) }
        let committedBefore = try #require(pair.backupCommittedEpoch(), "backup status")

        // The marker: the last value the client got before the inspection began.
        let acknowledged = try #require(client.values.last)
        let marker = try pair.inspect(["--json", "--", "sh", "-c", "tail -n 1 \"$1/counter.log\"", "sh", "{}"])
        #expect(marker.status == 0, "\(marker.stderr)")
        let lines = marker.stdout.split(separator: "\n")
        let scanned = try #require(lines.first.flatMap { UInt64($0) }, "\(marker.stdout) \(marker.stderr)")
        #expect(scanned >= acknowledged, "the checkpoint holds the value the guest acknowledged before the inspection")
        let report = try #require(lines.last.flatMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] })
        print("inspect: \(lines.last ?? "")")
        #expect(report["snapshot_from"] as? String == "backup agent")
        #expect((report["epoch"] as? Int ?? 0) >= committedBefore)
        let age = try #require(report["state_age_ms"] as? Double)
        let snapshot = try #require(report["snapshot_ms"] as? Double)
        // Checkpoints commit every 25 ms (interval_ms); the copy's windows hold applies back. The
        // half second covers this shared machine's scheduling, not the design.
        #expect(age <= 25 + snapshot + 500, "checkpoint \(age) ms old, the copy took \(snapshot) ms")
        #expect(pair.inspectionLeftovers().isEmpty, "left behind: \(pair.inspectionLeftovers())")

        // The primary's checkpoint pauses without inspections, while one inspection's command scans
        // (reads the disk's files and the memory image over and over), and with inspections back
        // to back (their copies, mounts and clean-ups one after another), in alternating 5 s
        // windows so that the rest of this shared machine's load falls on all three.
        let metrics = try Endpoint(parsing: "127.0.0.1:\(metricsPort)")
        var without = PauseWindow(), scanning = PauseWindow(), backToBack = PauseWindow()
        var inspections = 0
        let scan = "end=$(($(date +%s) + 5)); while [ $(date +%s) -lt $end ]; do cat \"$1\"/* \"$UNDERSTUDY_INSPECT_MEMORY\" > /dev/null 2>&1; done; exit 0"
        for _ in 0..<3 {
            let quiet = try MetricsExposition.scrape(metrics)
            Thread.sleep(forTimeInterval: 5)
            let scanStart = try MetricsExposition.scrape(metrics)
            without.add(quiet, scanStart)
            let long = try pair.inspect(["--memory", "--", "sh", "-c", scan, "sh", "{}"])
            #expect(long.status == 0, "\(long.stderr)")
            let loopStart = try MetricsExposition.scrape(metrics)
            scanning.add(scanStart, loopStart)
            let inspecting = ContinuousClock.now + .seconds(5)
            while ContinuousClock.now < inspecting {
                let run = try pair.inspect(["--", "test", "-s", "{}/counter.log"])
                #expect(run.status == 0, "\(run.stderr)")
                inspections += 1
            }
            backToBack.add(loopStart, try MetricsExposition.scrape(metrics))
        }
        print("inspect: primary pauses without inspections \(without); during a scan \(scanning); during \(inspections) inspections "
              + "back to back \(backToBack); mean ratios \(String(format: "%.2f, %.2f", scanning.meanMilliseconds / without.meanMilliseconds, backToBack.meanMilliseconds / without.meanMilliseconds))")
        #expect(without.count > 0 && scanning.count > 0 && backToBack.count > 0, "the primary kept checkpointing")

        // ClamAV: a signature made here from the log as the guest wrote it ("1\n2\n…N\n").
        client.stop()
        let state = try client.request("s").split(separator: " ")
        let last = try #require(state.count == 4 ? UInt64(state[1]) : nil, "\(state)")
        let sample = "\(pair.directory)/counter.log"
        try (1...last).map { "\($0)\n" }.joined().write(toFile: sample, atomically: false, encoding: .utf8)
        let signature = try HostCommand.run(["sigtool", "--md5", sample])
        try (signature + "\n").write(toFile: "\(pair.directory)/guest.hdb", atomically: false, encoding: .utf8)
        let infected = try pair.inspect(["--", "clamscan", "--no-summary", "-d", "\(pair.directory)/guest.hdb", "-r", "{}"])
        #expect(infected.status == 1, "clamscan exits 1 when it finds a signature: \(infected.stdout) \(infected.stderr)")
        #expect(infected.stdout.contains("counter.log: counter.log.UNOFFICIAL FOUND"), "\(infected.stdout)")
        // The same scan with a signature of other content finds nothing: the match is the file's.
        try (1...last + 1).map { "\($0)\n" }.joined().write(toFile: sample, atomically: false, encoding: .utf8)
        try (try HostCommand.run(["sigtool", "--md5", sample]) + "\n").write(toFile: "\(pair.directory)/other.hdb", atomically: false, encoding: .utf8)
        let clean = try pair.inspect(["--", "clamscan", "--no-summary", "-d", "\(pair.directory)/other.hdb", "-r", "{}"])
        #expect(clean.status == 0, "\(clean.stdout) \(clean.stderr)")
        #expect(pair.inspectionLeftovers().isEmpty, "left behind: \(pair.inspectionLeftovers())")
    }

    /// `[inspect]` with `every_s`: the backup runs the command itself, and `status` and the
    /// metrics say when, on which checkpoint, and with what result.
    @Test func scheduledInspectionsReportToStatusAndMetrics() throws {
        let metricsPort = LoopbackPorts.free(span: 1)
        let pair = try ProtectedPair(backupExtra: """
            [inspect]
            every_s = 10
            command = ["sh", "-c", "test -s {}/counter.log"]
            [metrics]
            listen = "127.0.0.1:\(metricsPort)"
            """)
        defer { pair.remove() }
        let client = CounterClient(network: pair.network)
        client.start()
        defer { client.stop() }
        try #require(client.waitForReplies(20, timeout: .seconds(120)), "the service never answered: \(client.errors); see \(pair.directory)")
        // A run that finds counter.log: one after the guest wrote it.
        let written = Date().timeIntervalSince1970
        var inspection: InspectionStatus?
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            inspection = AgentCommandLineTests.status(pair.configs.backup)?.backup?.inspection
            if let last = inspection?.last, last.startedAt > written { break }
            Thread.sleep(forTimeInterval: 0.5)
        }
        let status = try #require(inspection, "no inspection in the backup's status; see \(pair.directory)")
        let last = try #require(status.last, "no scheduled run within 60 s; see \(pair.directory)")
        print("scheduled inspection: \(status)")
        #expect(last.ok && last.exitStatus == 0, "\(last)")
        #expect((last.epoch ?? 0) > 0)
        #expect(status.everySeconds == 10)
        #expect(status.lastSuccessAt == last.startedAt)
        let human = try runCLI(["status", "--config", pair.configs.backup])
        #expect(human.stdout.contains("inspection") && human.stdout.contains("every 10 s"), "\(human.stdout)")
        let scraped = try MetricsExposition.scrape(try Endpoint(parsing: "127.0.0.1:\(metricsPort)"))
        #expect(scraped.totals("understudy_inspections_total", by: "result")["success", default: 0] >= 1, "\(scraped.samples)")
        #expect(scraped.total("understudy_inspection_last_success_timestamp_seconds") >= last.startedAt.rounded(.down))
        #expect(scraped.total("understudy_inspection_last_exit_status") == 0)
        #expect(pair.inspectionLeftovers().isEmpty, "left behind: \(pair.inspectionLeftovers())")
    }
}

/// The primary's checkpoint pauses in windows between scrapes of its metrics: how many, their
/// mean (from the histogram's sum), and the upper bound of the bucket holding the 99th percentile.
private struct PauseWindow: CustomStringConvertible {
    static let name = "understudy_checkpoint_pause_seconds"
    private(set) var count: Double = 0
    private var sum: Double = 0
    /// Pauses at or under each histogram bound (in seconds): cumulative, as Prometheus counts them.
    private var buckets: [Double: Double] = [:]

    /// Adds the pauses between scrapes `start` and `end`.
    mutating func add(_ start: MetricsExposition, _ end: MetricsExposition) {
        count += end.total("\(Self.name)_count") - start.total("\(Self.name)_count")
        sum += end.total("\(Self.name)_sum") - start.total("\(Self.name)_sum")
        let before = Dictionary(start.histogram(Self.name).map { ($0.upperBound, $0.count) }, uniquingKeysWith: +)
        for bucket in end.histogram(Self.name) { buckets[bucket.upperBound, default: 0] += bucket.count - (before[bucket.upperBound] ?? 0) }
    }

    var meanMilliseconds: Double { count > 0 ? sum / count * 1000 : 0 }

    var p99AtMostMilliseconds: Double {
        (buckets.sorted { $0.key < $1.key }.first { $0.value >= 0.99 * count }?.key ?? .infinity) * 1000
    }

    var description: String {
        String(format: "%.0f pauses, mean %.2f ms, p99 <= %.2f ms", count, meanMilliseconds, p99AtMostMilliseconds)
    }
}

extension ProtectedPair {
    func inspect(_ arguments: [String]) throws -> HostCommand.Output {
        try runCLI(["inspect", "--config", configs.backup, "--log-level", "notice"] + arguments)
    }

    /// What an inspection may have left: copies in /dev/shm and beside the replica disk, loop devices, mounts.
    func inspectionLeftovers() -> [String] {
        var found = ((try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? [])
            .filter { $0.hasPrefix("understudy-\(vm)-inspect-") }.map { "/dev/shm/\($0)" }
        found += ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.contains("-inspect-") }
        found += ((try? HostCommand.run(["losetup", "-a"])) ?? "").split(separator: "\n").filter { $0.contains("understudy-\(vm)-inspect-") }
            .map(String.init)
        found += ((try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? "").split(separator: "\n")
            .filter { $0.contains("understudy-\(vm)-inspect-") }.map(String.init)
        return found
    }
}
