import Foundation
import Testing
import UnderstudyAgent
import UnderstudyHarness
import UnderstudySystem
import UnderstudyTransport
import UnderstudyTestTags

/// `understudy drill` as an operator runs it on the backup, while the primary protects the
/// counter-service guest and a client keeps asking it for the next value.
@Suite("understudy drill", .serialized, .tags(.vm), .skippedInQuickLoop)
struct DrillTests {
    /// The issue's requirement, "a drill leaves the primary's counter service undisturbed", and
    /// the drill's own report; then a drill whose probe never succeeds fails, cleanly. One
    /// protected pair serves both drills: booting and synchronising it is most of the test's time.
    @Test func aDrillLeavesThePrimarysCounterServiceUndisturbed() throws {
        let pair = try ProtectedPair()
        defer { pair.remove() }
        let client = CounterClient(network: pair.network)
        client.start()
        defer { client.stop() }
        try #require(client.waitForReplies(20, timeout: .seconds(120)), "the service never answered: \(client.errors); see \(pair.directory)")
        // Protected: the backup has committed checkpoints (the guest may answer before that).
        let protected = ContinuousClock.now + .seconds(120)
        while (pair.backupCommittedEpoch() ?? 0) < 10, ContinuousClock.now < protected { Thread.sleep(forTimeInterval: 0.1) }
        let committedBefore = try #require(pair.backupCommittedEpoch(), "backup status")
        try #require(committedBefore >= 10, "the backup never committed; see \(pair.directory)")

        let drillStarted = ContinuousClock.now
        let drill = try runCLI(["drill", "--config", pair.configs.backup, "--probe", "tcp:\(pair.network.guestAddress):7000", "--json",
                                "--log-level", "notice"])
        let drillEnded = ContinuousClock.now
        #expect(drill.status == 0, "\(drill.stdout) \(drill.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(drill.stdout.utf8)) as? [String: Any], "\(drill.stdout) \(drill.stderr)")
        print("drill: \(drill.stdout)")
        #expect(report["ok"] as? Bool == true, "\(report)")
        #expect(report["snapshot_from"] as? String == "backup agent")
        let epoch = try #require(report["epoch"] as? Int)
        #expect(epoch >= committedBefore, "the clone starts from a checkpoint the backup committed by then")
        let recovery = try #require(report["recovery_ms"] as? Double)
        #expect(recovery > 0 && recovery < 60_000)
        #expect((report["replica_paused_ms"] as? Double ?? -1) >= 0)
        #expect((report["state_age_ms"] as? Double ?? -1) >= 0)
        // The probe's connection was answered from inside the sandbox: the clone's frames went
        // into the drill's namespace, its only way out.
        #expect((report["sandbox_frames_from_clone"] as? Int ?? 0) > 0, "\(report)")
        let sandbox = try #require(report["sandbox"] as? String)
        #expect(pair.leftovers(sandbox: sandbox).isEmpty, "left behind: \(pair.leftovers(sandbox: sandbox))")

        // The primary: its client went on over the same connection, never stalled for long,
        // never saw a value twice or out of order.
        #expect(client.waitForReplies(client.history.count + 20, timeout: .seconds(20)))
        let history = client.history
        #expect(client.reconnects == 0, "\(client.errors)")
        for (previous, next) in zip(history, history.dropFirst()) where next.value <= previous.value {
            Issue.record("the client got \(next.value) after \(previous.value)")
        }
        let during = [drillStarted] + history.map(\.at).filter { $0 > drillStarted && $0 < drillEnded } + [drillEnded]
        let longest = zip(during, during.dropFirst()).map { ($1 - $0).milliseconds }.max() ?? 0
        print("drill: the client got \(during.count - 2) replies during the \(Int((drillEnded - drillStarted).milliseconds)) ms drill, "
              + "longest wait \(Int(longest)) ms")
        #expect(longest < 2000, "the client waited \(Int(longest)) ms for a reply during the drill")
        // The backup went on committing.
        let committedAfter = try #require(pair.backupCommittedEpoch())
        #expect(committedAfter > epoch, "the backup committed \(committedAfter) after the drill of \(epoch)")

        // A probe that never succeeds: the drill fails, says why, and still removes everything.
        let failing = try runCLI(["drill", "--config", pair.configs.backup, "--probe", "tcp:\(pair.network.guestAddress):7999",
                                  "--timeout", "3", "--json"])
        #expect(failing.status != 0)
        let failed = try #require(try JSONSerialization.jsonObject(with: Data(failing.stdout.utf8)) as? [String: Any], "\(failing.stderr)")
        #expect(failed["ok"] as? Bool == false)
        #expect((failed["message"] as? String ?? "").contains("did not succeed within 3"), "\(failed)")
        #expect(failed["recovery_ms"] == nil)
        let failedSandbox = try #require(failed["sandbox"] as? String)
        #expect(pair.leftovers(sandbox: failedSandbox).isEmpty, "left behind: \(pair.leftovers(sandbox: failedSandbox))")
        #expect(client.reconnects == 0)

        // Interrupted (SIGINT) while the clone runs: it still removes everything.
        let log = "\(pair.directory)/interrupted-drill.log"
        let interrupted = try AgentPair.start(["drill", "--config", pair.configs.backup, "--probe", "tcp:\(pair.network.guestAddress):7999",
                                                           "--json", "--log-level", "notice"], log: log)
        let running = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < running, !((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("clone running") {
            Thread.sleep(forTimeInterval: 0.05)
        }
        kill(interrupted.processIdentifier, SIGINT)
        interrupted.waitUntilExit()
        #expect(interrupted.terminationStatus != 0)
        let interruptedOutput = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        let interruptedReport = try #require(interruptedOutput.split(separator: "\n").last { $0.hasPrefix("{") }
            .flatMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }, "\(interruptedOutput)")
        #expect((interruptedReport["message"] as? String ?? "").contains("interrupted"), "\(interruptedReport)")
        let interruptedSandbox = try #require(interruptedReport["sandbox"] as? String)
        #expect(pair.leftovers(sandbox: interruptedSandbox).isEmpty, "left behind: \(pair.leftovers(sandbox: interruptedSandbox))")

        // With no backup agent running, the drill copies the replica directory itself, and finds
        // it as the agent left it: the last committed checkpoint, not used up.
        client.stop()
        pair.terminate(pair.primary)
        let last = try #require(pair.backupCommittedEpoch())
        pair.terminate(pair.backup)
        let offline = try runCLI(["drill", "--config", pair.configs.backup, "--probe", "tcp:\(pair.network.guestAddress):7000", "--json"])
        #expect(offline.status == 0, "\(offline.stdout) \(offline.stderr)")
        let offlineReport = try #require(try JSONSerialization.jsonObject(with: Data(offline.stdout.utf8)) as? [String: Any], "\(offline.stderr)")
        #expect(offlineReport["snapshot_from"] as? String == "replica directory")
        #expect(offlineReport["epoch"] as? Int == last)
        let offlineSandbox = try #require(offlineReport["sandbox"] as? String)
        #expect(pair.leftovers(sandbox: offlineSandbox).isEmpty, "left behind: \(pair.leftovers(sandbox: offlineSandbox))")
    }

    /// `drill.every` on a live pair: the backup agent drills by itself with an `exec:` probe that
    /// asks the clone's counter service whether its memory and its disk agree (an application
    /// check, not a port check). While another process holds the host's only drill slot the
    /// drill waits and says so; once the slot is free it runs, and `status` and the metrics show it.
    @Test func aScheduledDrillWaitsForTheHostsSlotThenReportsToStatusAndMetrics() throws {
        let metricsPort = LoopbackPorts.free(span: 1)
        let slotParent = "/tmp/understudy-slots-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: slotParent) }
        let slots = HostSlots(directory: "\(slotParent)/drill-slots", count: 1)
        let held = try #require(try slots.tryTake(), "the test's own hold on the slot")
        // "s" answers "S <counter> <last value in the file> <lines>": the probe passes once the
        // clone serves, and its memory counter agrees with its disk.
        func check(_ network: PairNetwork) -> String {
            "exec 3<>/dev/tcp/\(network.guestAddress)/7000 && echo s >&3 && read -t 5 reply <&3 && set -- $reply && [ \\\"$1\\\" = S ] "
                + "&& [ \\\"$2\\\" -gt 0 ] && [ \\\"$2\\\" = \\\"$3\\\" ]"
        }
        let pair = try ProtectedPair(drill: { network in """
            probe = "exec:bash -c '\(check(network))'"
            every = "15s"
            timeout_s = 30
            slot_dir = "\(slots.directory)"
            """ }, backupExtra: """
            [metrics]
            listen = "127.0.0.1:\(metricsPort)"
            """)
        defer { pair.remove() }
        let client = CounterClient(network: pair.network)
        client.start()
        defer { client.stop() }
        try #require(client.waitForReplies(20, timeout: .seconds(120)), "the service never answered: \(client.errors); see \(pair.directory)")

        var status: BackupStatus?
        let waiting = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < waiting {
            status = AgentCommandLineTests.status(pair.configs.backup)?.backup
            if status?.drills?.waiting != nil { break }
            Thread.sleep(forTimeInterval: 0.5)
        }
        let waited = try #require(status?.drills, "no drills in the backup's status; see \(pair.directory)")
        #expect(waited.waiting?.contains("drill slot") == true, "\(waited)")
        #expect(waited.runs == 0 && status?.lastDrill == nil, "a drill ran without the slot: \(String(describing: status))")
        held.release()

        let released = Date().timeIntervalSince1970
        var last: DrillOutcome?
        let deadline = ContinuousClock.now + .seconds(120)
        while ContinuousClock.now < deadline {
            status = AgentCommandLineTests.status(pair.configs.backup)?.backup
            if let drill = status?.lastDrill, drill.passed, drill.at > released { last = drill; break }
            Thread.sleep(forTimeInterval: 0.5)
        }
        let drill = try #require(last, "no passing scheduled drill within 120 s: \(String(describing: status)); see \(pair.directory)")
        print("scheduled drill: \(drill); status: \(String(describing: status?.drills))")
        #expect(drill.probe.hasPrefix("exec:bash"))
        #expect((drill.recoveryMs ?? 0) > 0 && (drill.stateAgeMs ?? -1) >= 0 && (drill.epoch ?? 0) > 0, "\(drill)")
        #expect(status?.problems == nil || status?.problems?.contains { $0.contains("FAILED") } == false, "\(String(describing: status?.problems))")
        let human = try runCLI(["status", "--config", pair.configs.backup])
        #expect(human.stdout.contains("last drill") && human.stdout.contains("passed at"), "\(human.stdout)")
        let scraped = try MetricsExposition.scrape(try Endpoint(parsing: "127.0.0.1:\(metricsPort)"))
        #expect(scraped.totals("understudy_drills_total", by: "result")["passed", default: 0] >= 1, "\(scraped.samples)")
        #expect(scraped.total("understudy_drill_last_success_timestamp_seconds") >= released.rounded(.down))
        #expect(scraped.total("understudy_drill_recovery_seconds") > 0)
        #expect(client.reconnects == 0, "\(client.errors)")
        // The drills' namespaces and clones are gone (the next may be running: stop the backup first).
        // Only this backup's drills, named in its log: other suites' drills run at the same time.
        pair.terminate(pair.backup)
        let sandboxes = DrillSandboxLog.sandboxes(inLog: "\(pair.directory)/backup.log")
        #expect(!sandboxes.isEmpty, "the backup's log names its drills' sandboxes")
        for sandbox in sandboxes {
            #expect(pair.leftovers(sandbox: sandbox).isEmpty, "left behind: \(pair.leftovers(sandbox: sandbox))")
        }
    }

    @Test func drillSettingsAreCheckedWithTheKeyNamed() throws {
        let base = "[node]\nname = \"b\"\ncertificates = \"/c\"\n[peer]\nname = \"p\"\n[vm]\nid = \"v\"\nmemory_mib = 64\nkernel = \"/k\"\n[drill]\n"
        let good = try AgentConfiguration(document: TOMLDocument(
            parsing: base + "probe = \"serial:SERVICE READY\"\ntimeout_s = 5\nsandbox_address = \"10.77.0.1/24\"\n", source: "good.toml"))
        #expect(good.drill == DrillConfiguration(probe: .serial(marker: "SERVICE READY"), timeout: .seconds(5), sandboxAddress: "10.77.0.1/24"))
        for (line, key) in [("probe = \"udp:1.2.3.4:5\"", "drill.probe"), ("probe = \"tcp:nowhere\"", "drill.probe"),
                            ("sandbox_address = \"10.77.0.1\"", "drill.sandbox_address"), ("timeout_s = 0", "drill.timeout_s"),
                            ("prbe = \"serial:x\"", "drill.prbe")] {
            do {
                _ = try AgentConfiguration(document: TOMLDocument(parsing: base + line + "\n", source: "bad.toml"))
                Issue.record("accepted \(line)")
            } catch {
                #expect(error.key == key, "\(error)")
            }
        }
    }

    @Test func aReplicaThatIsNotCommittedIsRefused() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-drill-\(UUID().uuidString.prefix(8))").path
        let vm = "dr\(UUID().uuidString.prefix(6).lowercased())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let configs = try AgentPair.writeConfigs(in: directory, port: 1, vm: vm, guest: TestGuest.image, cmdline: "",
                                                             replicaDirectory: "\(directory)/replica")
        let result = try runCLI(["drill", "--config", configs.backup, "--probe", "serial:READY"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("empty, not committed"), "\(result.stderr)")
        let shared = (try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? []
        #expect(!shared.contains { $0.hasPrefix("understudy-\(vm)-drill-") })
    }
}
