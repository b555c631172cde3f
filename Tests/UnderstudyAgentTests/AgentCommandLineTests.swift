import Foundation
import Synchronization
import Testing
import UnderstudyAgent
import UnderstudyHarness
import UnderstudyTestTags

/// The agent commands as an operator runs them: separate processes, configuration files,
/// a primary killed with SIGKILL (agent and QEMU), the backup activated.
@Suite("understudy primary, backup, activate, status", .serialized, .tags(.vm), .skippedInQuickLoop)
struct AgentCommandLineTests {
    /// Writes a primary and a backup configuration for the test guest into `directory`.
    /// - Parameters:
    ///   - disks: the primary's disk and the backup's replica disk, when the VM has one.
    ///   - taps: the primary's and the backup's TAP, when the VM has a NIC.
    ///   - primaryNetwork: more `[network]` lines for the primary (e.g. the unsafe option).
    static func status(_ config: String) -> AgentStatus? {
        guard let result = try? runCLI(["status", "--config", config, "--json"]), result.status == 0 else { return nil }
        return try? JSONDecoder().decode(AgentStatus.self, from: Data(result.stdout.utf8))
    }

    @Test func protectKillAndActivateFromTheCommandLine() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-cli-\(UUID().uuidString.prefix(8))").path
        let vm = "cli\(UUID().uuidString.prefix(6).lowercased())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var processes: [Process] = []
        defer {
            for process in processes where process.isRunning { kill(process.processIdentifier, SIGKILL) }
            for process in processes { process.waitUntilExit() }
            if let qemu = try? String(contentsOfFile: "\(directory)/run-primary/qemu.pid", encoding: .utf8), let pid = Int32(qemu) { kill(pid, SIGKILL) }
            try? FileManager.default.removeItem(atPath: directory)
            try? FileManager.default.removeItem(atPath: "/dev/shm/understudy-cli-\(vm)")
            // The killed primary leaves its private directory (RAM and device state), as a crashed host would.
            for file in (try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? [] where file.hasPrefix("understudy-\(vm)-") {
                try? FileManager.default.removeItem(atPath: "/dev/shm/\(file)")
            }
        }
        #expect(try runCLI(["certs", "init", "--dir", "\(directory)/certs", "--nodes", "primary,backup"]).status == 0)
        let port = LoopbackPorts.free()
        let configs = try AgentPair.writeConfigs(in: directory, port: port, vm: vm, guest: TestGuest.image, cmdline: "understudy.dirty_pages_per_sec=2000",
                                            replicaDirectory: "/dev/shm/understudy-cli-\(vm)")

        let backup = try AgentPair.start(["backup", "--config", configs.backup, "--log-level", "info"], log: "\(directory)/backup.log")
        processes.append(backup)
        Thread.sleep(forTimeInterval: 0.5)
        let primary = try AgentPair.start(["primary", "--config", configs.primary, "--log-level", "info"], log: "\(directory)/primary.log")
        processes.append(primary)

        // Protected: wait until status shows the primary checkpointing and committing at more than
        // half its 40/s (a moment of a loaded machine's starvation is waited out; the young
        // session's rate is PrimaryStatisticsTests' business).
        let deadline = ContinuousClock.now + .seconds(120)
        var primaryStatus: PrimaryStatus?
        while ContinuousClock.now < deadline {
            primaryStatus = Self.status(configs.primary)?.primary
            if primaryStatus?.state == .protecting, (primaryStatus?.committedEpoch ?? 0) > 100, (primaryStatus?.checkpointsPerSecond ?? 0) > 20 { break }
            Thread.sleep(forTimeInterval: 0.5)
        }
        let status = try #require(primaryStatus, "status of the primary")
        #expect(status.state == .protecting)
        #expect(status.dirtyTracking != nil && status.stagingBytes != nil)
        #expect((status.checkpointsPerSecond ?? 0) > 20, "\(status)")
        #expect(status.pauseMillisecondsP99 != nil && status.ackLatencyMillisecondsP50 != nil)
        let human = try runCLI(["status", "--config", configs.primary])
        #expect(human.stdout.contains("checkpoints/s") && human.stdout.contains("dirty tracking") && human.stdout.contains("staging kept"))

        // The primary host dies: SIGKILL to the agent and to its QEMU.
        let qemuPID = try #require(Int32(try String(contentsOfFile: "\(directory)/run-primary/qemu.pid", encoding: .utf8)))
        kill(primary.processIdentifier, SIGKILL)
        kill(qemuPID, SIGKILL)
        primary.waitUntilExit()
        let primaryCounters = TestGuest.counters(in: "\(directory)/run-primary/serial.log")

        // The backup notices, keeps its last committed epoch; stop it and activate.
        var committed: UInt64 = 0
        let noticed = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < noticed {
            let backupStatus = Self.status(configs.backup)?.backup
            committed = backupStatus?.committedEpoch ?? 0
            if backupStatus?.detail != nil { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        #expect(committed > 100)
        kill(backup.processIdentifier, SIGTERM)
        backup.waitUntilExit()
        #expect(backup.terminationStatus == 0, "the backup stops cleanly on SIGTERM")

        let activate = try AgentPair.start(["activate", "--config", configs.backup], log: "\(directory)/activate.log")
        processes.append(activate)
        let resumed = try #require(TestGuest.waitForCounter(in: "\(directory)/run-backup/serial.log", timeout: .seconds(30)))
        let activeStatus = Self.status(configs.backup)
        #expect(activeStatus?.role == .primary)
        #expect(activeStatus?.primary?.state == .unprotected, "the backup's configuration names no peer to protect to")
        #expect(activeStatus?.primary?.activatedFromEpoch == committed)
        // Not from boot, not ahead of the primary: from the last committed checkpoint.
        #expect(resumed > (primaryCounters.first ?? 0))
        #expect(resumed <= (primaryCounters.last ?? 0) + 100_000_000)
        kill(activate.processIdentifier, SIGTERM)
        activate.waitUntilExit()
        let activateLog = (try? String(contentsOfFile: "\(directory)/activate.log", encoding: .utf8)) ?? ""
        #expect(activateLog.contains("running from checkpoint \(committed)"), "\(activateLog)")
    }

    @Test func configurationErrorsNameTheKey() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-cfg-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cases: [(String, String)] = [
            ("[node]\nname = \"a\"\ncertificates = \"/c\"\n[peer]\nname = \"b\"\naddress = \"127.0.0.1:1\"\n[vm]\nid = \"v\"\nmemory_mib = \"lots\"\nkernel = \"/k\"\n",
             "vm.memory_mib"),
            ("[node]\nname = \"a\"\ncertificates = \"/c\"\n[peer]\nname = \"b\"\n[vm]\nid = \"v\"\nmemroy_mib = 64\n", "memroy_mib"),
            ("[node]\nname = \"a\"\ncertificates = \"/c\"\n[peer]\nname = \"b\"\naddress = \"nowhere\"\n[vm]\nid = \"v\"\nmemory_mib = 64\nkernel = \"/k\"\n",
             "peer.address"),
            ("[node]\nname = \"a\"\ncertificates = \"/c\"\n[peer]\nname = \"b\"\n[vm]\nid = \"v\"\nmemory_mib = 64\nkernel = \"/k\"\n", "peer.address"),
        ]
        for (text, key) in cases {
            try text.write(toFile: "\(directory)/bad.toml", atomically: true, encoding: .utf8)
            let result = try runCLI(["primary", "--config", "\(directory)/bad.toml"])
            #expect(result.status != 0)
            #expect(result.stderr.contains(key), "expected an error naming \(key): \(result.stderr)")
        }
        let missing = try runCLI(["primary", "--config", "\(directory)/absent.toml"])
        #expect(missing.status != 0 && missing.stderr.contains("absent.toml"))
    }

    @Test func statusWithoutAnAgentSaysSo() throws {
        let result = try runCLI(["status", "--socket", "/tmp/understudy-no-such-agent.sock"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("is the agent running?"), "\(result.stderr)")
    }

    @Test func statusWatchRedrawsUntilInterrupted() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-watch-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let counter = Mutex(0)
        let server = try ControlServer(path: "\(directory)/control.sock") {
            let call = counter.withLock { value -> Int in
                value += 1
                return value
            }
            var status = PrimaryStatus(vm: "watched", state: .protecting)
            status.committedEpoch = UInt64(call)
            return .primary(status)
        }
        defer { server.close() }
        let watcher = try AgentPair.start(["status", "--socket", "\(directory)/control.sock", "--watch", "--interval", "0.1"],
                                     log: "\(directory)/watch.log")
        Thread.sleep(forTimeInterval: 1.5)
        kill(watcher.processIdentifier, SIGKILL)
        watcher.waitUntilExit()
        let output = try String(contentsOfFile: "\(directory)/watch.log", encoding: .utf8)
        let epochs = output.split(separator: "\n").filter { $0.hasPrefix("committed epoch") }.compactMap { UInt64($0.split(separator: " ").last!) }
        #expect(epochs.count >= 3, "the status is shown again and again: \(output)")
        #expect(epochs == epochs.sorted() && Set(epochs).count == epochs.count, "each refresh asks the agent anew")
        #expect(!output.contains("\u{1B}["), "no terminal control codes into a file")

        let both = try runCLI(["status", "--socket", "\(directory)/control.sock", "--watch", "--json"])
        #expect(both.status != 0 && both.stderr.contains("--watch"))
        let fast = try runCLI(["status", "--socket", "\(directory)/control.sock", "--watch", "--interval", "0"])
        #expect(fast.status != 0 && fast.stderr.contains("--interval"))
    }
}
