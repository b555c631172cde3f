import Foundation
import Testing
import UnderstudyAgent
import UnderstudyProtocol

@Suite("understudy command line")
struct CommandLineTests {
    @Test func versionNamesReleaseAndProtocol() throws {
        let result = try runCLI(["version"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("understudy 0.1.0 (replication protocol v1)"))
    }

    @Test func helpListsTheCommands() throws {
        let result = try runCLI(["--help"])
        #expect(result.status == 0)
        for command in ["version", "certs", "demo"] { #expect(result.stdout.contains(command)) }
    }

    @Test func certsInitWritesOwnerOnlyKeysAndRefusesToOverwrite() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-cli-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try runCLI(["certs", "init", "--dir", dir, "--nodes", "a,b"])
        #expect(first.status == 0, "\(first.stderr)")
        for file in ["ca.pem", "ca.key", "a.pem", "a.key", "b.pem", "b.key"] {
            #expect(FileManager.default.fileExists(atPath: "\(dir)/\(file)"), "\(file)")
        }
        let mode = try FileManager.default.attributesOfItem(atPath: "\(dir)/a.key")[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let again = try runCLI(["certs", "init", "--dir", dir, "--nodes", "a,b"])
        #expect(again.status != 0)
        #expect(again.stderr.contains("already exists"), "\(again.stderr)")
    }

    @Test func certsAddIssuesFromTheCAAndBothCheckTheValidity() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-cli-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try runCLI(["certs", "init", "--dir", dir, "--nodes", "a"]).status == 0)
        let added = try runCLI(["certs", "add", "--dir", dir, "--node", "spare", "--days", "30"])
        #expect(added.status == 0, "\(added.stderr)")
        #expect(FileManager.default.fileExists(atPath: "\(dir)/spare.pem"))
        for command in [["init", "--nodes", "b"], ["add", "--node", "c"]] {
            for days in ["0", "36501"] {
                let refused = try runCLI(["certs"] + command + ["--dir", "\(dir)-\(days)", "--days", days])
                #expect(refused.status != 0)
                #expect(refused.stderr.contains("--days must be between 1 and 36500"), "\(command): \(refused.stderr)")
            }
        }
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/c.pem"))
    }

    @Test func badOptionsGiveClearErrors() throws {
        let result = try runCLI(["demo", "--synthetic", "--mix", "text,cheese"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("unknown content \"cheese\""), "\(result.stderr)")
        let real = try runCLI(["demo", "--mix", "text"])
        #expect(real.status != 0)
        #expect(real.stderr.contains("--mix: only with --synthetic"), "\(real.stderr)")
    }

    @Test func demoReplicatesAndReportsJSON() throws {
        let result = try runCLI(["demo", "--synthetic", "--memory-mib", "8", "--pages-per-checkpoint", "100", "--seconds", "1", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let start = result.stdout.firstIndex(of: "{")!
        let report = try JSONSerialization.jsonObject(with: Data(result.stdout[start...].utf8)) as! [String: Any]
        #expect(report["replicaMatchesPrimary"] as? Bool == true)
        #expect((report["checkpoints"] as? Int ?? 0) > 0)
        #expect((report["compressionRatio"] as? Double ?? 0) > 1)
    }

    @Test func statusShowsTheInitialSyncAsAProgressBar() {
        var status = PrimaryStatus(vm: "v", state: .syncing)
        status.syncBytesDone = 300_000_000
        status.syncBytesTotal = 1_200_000_000
        status.syncBytesPerSecond = 150_000_000
        status.syncSecondsLeft = 6
        let line = AgentStatus.primary(status).humanReadable.split(separator: "\n").first { $0.hasPrefix("initial sync") }
        #expect(line?.contains("[#######-----------------------]  25%") == true, "\(line ?? "no sync line")")
        #expect(line?.contains("150 MB/s") == true && line?.contains("ETA 6 s") == true, "\(line ?? "")")
    }

    @Test func statusShowsTheIntervalWhyTheLagAndTheCatchUp() {
        var statistics = PrimaryStatistics()
        statistics.interval = CheckpointIntervalController.Decision(interval: .milliseconds(400), reason: .fitted,
                                                                    demandBytesPerSecond: 1_500_000, budgetBytesPerSecond: 2_000_000)
        statistics.lag = .milliseconds(6_200)
        statistics.lagPeaks = [.milliseconds(300), .milliseconds(7_000)]
        statistics.recoveryPointExceeded = true
        statistics.throttle = 0.4
        statistics.start = .catchUp(base: 41)
        statistics.catchUpPages = 1200
        statistics.catchUpDiskWrites = 30
        statistics.catchUpWireBytes = 2_500_000
        statistics.catchUpDuration = .milliseconds(1500)
        var status = PrimaryStatus(vm: "v", state: .protecting)
        status.add(statistics: statistics)
        status.dirtyTracking = "pagemap"
        status.protectionMode = "asynchronous"
        status.recoveryPointObjectiveMilliseconds = 5000
        let text = AgentStatus.primary(status).humanReadable
        func line(_ name: String) -> String { text.split(separator: "\n").first { $0.hasPrefix(name) }.map(String.init) ?? "no \(name) line in\n\(text)" }
        #expect(line("interval").contains("400 ms: stretched so that each checkpoint fits the link's budget (checkpoints need 1.50 MB/s of 2.00 MB/s)"), "\(line("interval"))")
        #expect(line("replica lag").contains("6200 ms now") && line("replica lag").contains("objective 5000 ms: EXCEEDED")
                && line("replica lag").contains("held paused 40%"), "\(line("replica lag"))")
        #expect(line("session start").contains("catch-up from checkpoint 41"))
        #expect(line("catch-up").contains("1200 pages, 30 disk writes, 2.5 MB on the wire, acknowledged 1.5 s after its capture"), "\(line("catch-up"))")
        #expect(line("mode").contains("asynchronous"))
    }
}
