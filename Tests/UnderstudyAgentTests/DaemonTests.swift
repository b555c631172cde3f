import Foundation
import Logging
import Testing
import UnderstudyNetwork
import UnderstudyAgent
import UnderstudyHarness
import UnderstudySystem
import UnderstudyTestTags

/// `understudy run`: the starting role, the role record, the log format, SIGHUP reloads (pure or
/// file-level), and the daemon end to end.
@Suite struct StartingRoleTests {
    @Test func aNewNodeStartsInItsConfiguredRole() {
        #expect(StartingRole.decide(configured: .primary, last: nil, override: nil).start == .primaryUnlessActiveElsewhere)
        #expect(StartingRole.decide(configured: .backup, last: nil, override: nil).start == .backup)
    }

    @Test func theRecordWinsOverTheConfiguredRole() {
        #expect(StartingRole.decide(configured: .primary, last: .backup, override: nil).start == .backup,
                "a primary that switched over restarts as the backup")
        #expect(StartingRole.decide(configured: .backup, last: .primaryStopped, override: nil).start == .primaryUnlessActiveElsewhere,
                "the VM was stopped here in an orderly way: boot it again")
    }

    @Test func aNodeThatDiedRunningTheVMRestartsAsTheBackup() {
        let decision = StartingRole.decide(configured: .primary, last: .primary, override: nil)
        #expect(decision.start == .backup)
        #expect(decision.reason.contains("--start-as primary"), "the reason tells the operator the way out: \(decision.reason)")
    }

    @Test func theOperatorOverrides() {
        #expect(StartingRole.decide(configured: .backup, last: .primary, override: .primary).start == .primary)
        #expect(StartingRole.decide(configured: .primary, last: nil, override: .backup).start == .backup)
    }
}

@Suite struct RoleRecordTests {
    @Test func storesAndLoadsEveryEntry() throws {
        let directory = NSTemporaryDirectory() + "understudy-role-\(UUID().uuidString.prefix(8))/state"
        defer { try? FileManager.default.removeItem(atPath: (directory as NSString).deletingLastPathComponent) }
        let record = RoleRecord(directory: directory)
        #expect(try record.load() == nil, "no file: a node that never ran")
        for entry in [RoleRecord.Entry.primary, .primaryStopped, .backup] {
            try record.store(entry)
            #expect(try record.load() == entry)
        }
        let mode = try FileManager.default.attributesOfItem(atPath: directory)[.posixPermissions] as? Int
        #expect(mode == 0o700)
        #expect(!FileManager.default.fileExists(atPath: record.path + ".new"))
    }

    @Test func anUnreadableRecordIsAnErrorThatSaysWhatToDo() throws {
        let directory = NSTemporaryDirectory() + "understudy-role-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let record = RoleRecord(directory: directory)
        try "primray\n".write(toFile: record.path, atomically: true, encoding: .utf8)
        #expect {
            try record.load()
        } throws: { error in
            "\(error)".contains("primray") && "\(error)".contains("--start-as")
        }
    }

    @Test func aNodeThatRanTheVMLastResetsItsReplicaBeforeServingAsTheBackup() {
        #expect(RoleRecord.Entry.primary.replicaResetReason?.contains("\"primary\"") == true)
        #expect(RoleRecord.Entry.primaryStopped.replicaResetReason?.contains("predates") == true)
        #expect(RoleRecord.Entry.backup.replicaResetReason == nil, "a backup's replica is the primary's history")
    }
}

@Suite struct AgentLogTests {
    @Test func jsonLinesCarryTheRecordAndItsMetadata() throws {
        let line = AgentLogHandler.jsonLine(level: .error, label: "understudy", message: "disk \"a\" full\nretrying",
                                            metadata: ["vm": "web-1", "epochs": .array(["1", "2"])], source: "UnderstudyAgent",
                                            time: Date(timeIntervalSince1970: 0))
        #expect(!line.contains("\n"), "one record per line")
        let record = try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(record["level"] as? String == "error")
        #expect(record["message"] as? String == "disk \"a\" full\nretrying")
        #expect(record["label"] as? String == "understudy")
        #expect(record["source"] as? String == "UnderstudyAgent")
        #expect((record["time"] as? String)?.hasPrefix("1970-01-01T00:00:00.000") == true, "\(record["time"] ?? "")")
        let metadata = try #require(record["metadata"] as? [String: Any])
        #expect(metadata["vm"] as? String == "web-1")
        #expect(metadata["epochs"] as? [String] == ["1", "2"])
    }

    @Test func theLevelControlIsSharedAndChangeable() {
        let control = LogLevelControl(.warning)
        var handler = AgentLogHandler(label: "t", format: .json, control: control)
        #expect(handler.logLevel == .warning)
        control.level = .debug
        #expect(handler.logLevel == .debug, "handlers read the shared level at each message")
        handler.logLevel = .error
        #expect(control.level == .error)
    }
}

@Suite struct ConfigurationReloaderTests {
    private func configuration(level: String?, memory: Int = 64) -> String {
        """
        [node]
        name = "a"
        certificates = "/tmp"
        [peer]
        name = "b"
        [vm]
        id = "reload"
        memory_mib = \(memory)
        kernel = "/boot/vmlinuz"
        """ + (level.map { "\n[log]\nlevel = \"\($0)\"\n" } ?? "\n")
    }

    @Test func appliesTheLogLevelAndReportsTheRest() throws {
        let path = NSTemporaryDirectory() + "understudy-reload-\(UUID().uuidString.prefix(8)).toml"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try configuration(level: "warning").write(toFile: path, atomically: true, encoding: .utf8)
        let levels = LogLevelControl(.warning)
        let reloader = ConfigurationReloader(path: path, loaded: try TOMLDocument(contentsOfFile: path), levels: levels, levelOverride: nil,
                                             logger: Logger(label: "test"))

        try configuration(level: "debug", memory: 128).write(toFile: path, atomically: true, encoding: .utf8)
        let outcome = reloader.reload()
        #expect(outcome.error == nil)
        #expect(outcome.applied == ["log.level"])
        #expect(outcome.atNextStart == ["vm.memory_mib"])
        #expect(levels.level == .debug)

        try "[node]\nname = 3\n".write(toFile: path, atomically: true, encoding: .utf8)
        let broken = reloader.reload()
        #expect(broken.error?.contains("node.name") == true, "\(broken.error ?? "no error")")
        #expect(broken.applied.isEmpty && levels.level == .debug, "an invalid file changes nothing")

        try configuration(level: nil, memory: 128).write(toFile: path, atomically: true, encoding: .utf8)
        #expect(reloader.reload().applied == ["log.level"])
        #expect(levels.level == AgentLogHandler.defaultLevel, "a removed level falls back to the default")
    }

    /// The gate policy swaps whole on reload; an invalid rule set leaves the running one.
    @Test func swapsTheGatePolicyAndKeepsItWhenTheNewSetIsInvalid() throws {
        let path = NSTemporaryDirectory() + "understudy-reload-\(UUID().uuidString.prefix(8)).toml"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let rule = "\n[[network.rules]]\naction = \"deny\"\nprotocol = \"tcp\"\ndestination_ports = \"%@\"\n"
        try (configuration(level: nil) + String(format: rule, "22")).write(toFile: path, atomically: true, encoding: .utf8)
        let loaded = try AgentConfiguration(contentsOfFile: path)
        let policy = GatePolicyControl(loaded.policy)
        let reloader = ConfigurationReloader(path: path, loaded: try TOMLDocument(contentsOfFile: path), levels: LogLevelControl(.info),
                                             levelOverride: nil, policy: policy, logger: Logger(label: "test"))

        try (configuration(level: nil) + String(format: rule, "23") + "[network]\ndefault_action = \"deny\"\n")
            .write(toFile: path, atomically: true, encoding: .utf8)
        let outcome = reloader.reload()
        #expect(outcome.error == nil)
        #expect(outcome.applied == ["network.default_action", "network.rules[0].destination_ports"])
        #expect(outcome.atNextStart.isEmpty)
        #expect(policy.policy.rules.map(\.destinationPorts) == [PortRange(23, 23)])
        #expect(policy.policy.defaultAction == .deny)

        try (configuration(level: nil) + String(format: rule, "25") + String(format: rule, "80-70")).write(toFile: path, atomically: true, encoding: .utf8)
        let broken = reloader.reload()
        #expect(broken.error?.contains("network.rules[1].destination_ports") == true, "\(broken.error ?? "no error")")
        #expect(policy.policy.rules.map(\.destinationPorts) == [PortRange(23, 23)], "an invalid rule set changes nothing, not even its valid rules")
        #expect(policy.policy.defaultAction == .deny)
    }

    @Test func theCommandLineLevelWins() throws {
        let path = NSTemporaryDirectory() + "understudy-reload-\(UUID().uuidString.prefix(8)).toml"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try configuration(level: "warning").write(toFile: path, atomically: true, encoding: .utf8)
        let levels = LogLevelControl(.info)
        let reloader = ConfigurationReloader(path: path, loaded: try TOMLDocument(contentsOfFile: path), levels: levels, levelOverride: .info,
                                             logger: Logger(label: "test"))
        try configuration(level: "critical").write(toFile: path, atomically: true, encoding: .utf8)
        #expect(reloader.reload().applied == ["log.level"])
        #expect(levels.level == .info)
    }
}

/// The daemon's entry point up to the start: the file parsed once, the keys each mode needs, the
/// starting role.
@Suite struct NodeDaemonTests {
    private func document(_ extra: String = "", role: String? = "primary", stateDirectory: String = "/nonexistent") throws -> TOMLDocument {
        try TOMLDocument(parsing: """
            [node]
            name = "a"
            certificates = "/tmp"
            state_dir = "\(stateDirectory)"
            """ + (role.map { "\nrole = \"\($0)\"\n" } ?? "\n") + """
            [peer]
            name = "b"
            address = "127.0.0.1:7000"
            [vm]
            id = "daemon"
            memory_mib = 64
            kernel = "/boot/vmlinuz"
            """ + "\n" + extra, source: "node.toml")
    }

    private let backupKeys = "[backup]\nlisten = \"127.0.0.1:7001\"\nreplica_dir = \"/tmp/replica\"\n"

    @Test func runNeedsARoleAndBothRolesKeys() throws {
        #expect {
            try NodeDaemon(document: document(backupKeys, role: nil), path: "node.toml", mode: .daemon(override: nil))
        } throws: { "\($0)" == "node.toml: node.role: missing required key: understudy run starts a new pair's node in this role (\"primary\" or \"backup\")" }
        #expect {
            try NodeDaemon(document: document(), path: "node.toml", mode: .daemon(override: nil))
        } throws: { "\($0)".contains("backup.listen") }
        let overridden = try NodeDaemon(document: document(backupKeys, role: nil), path: "node.toml", mode: .daemon(override: .backup))
        #expect(overridden.decision.start == .backup)
    }

    @Test func runStartsFromTheRoleRecord() throws {
        let directory = NSTemporaryDirectory() + "understudy-daemon-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try NodeDaemon(document: document(backupKeys, stateDirectory: directory), path: "node.toml", mode: .daemon(override: nil))
        #expect(first.decision.start == .primaryUnlessActiveElsewhere)
        try RoleRecord(directory: directory).store(.primary)
        let restarted = try NodeDaemon(document: document(backupKeys, stateDirectory: directory), path: "node.toml", mode: .daemon(override: nil))
        #expect(restarted.decision.start == .backup, "it died running the VM: \(restarted.decision.reason)")
    }

    @Test func aFixedRoleNeedsOnlyItsOwnKeys() throws {
        #expect(try NodeDaemon(document: document(role: nil), path: "node.toml", mode: .fixed(.primary)).decision.start == .primary)
        #expect {
            try NodeDaemon(document: document(role: nil), path: "node.toml", mode: .fixed(.activate))
        } throws: { "\($0)" == "node.toml: backup.replica_dir: missing required key: activation needs the replica" }
        #expect {
            try NodeDaemon(document: document(role: nil), path: "node.toml", mode: .fixed(.backup))
        } throws: { "\($0)".contains("backup.listen") }
        #expect(try NodeDaemon(document: document(backupKeys), path: "node.toml", mode: .fixed(.activate)).decision.start == .activate)
    }
}

/// The daemon as systemd runs it: two `understudy run` processes; SIGTERM on the one running the
/// VM hands the VM over (the client's connection survives), the stopped node's record says
/// backup, and restarted it becomes the backup of the other; SIGHUP reloads the log level.
@Suite("understudy run", .serialized, .tags(.vm), .skippedInQuickLoop)
struct DaemonTests {
    @Test func sigtermHandsTheVMOverAndARestartedNodeKeepsItsRole() throws {
        let directory = NSTemporaryDirectory() + "understudy-daemon-\(UUID().uuidString.prefix(8))"
        let vm = "dm\(UUID().uuidString.prefix(6).lowercased())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let network = try PairNetwork(tapCount: 2)
        var processes: [Process] = []
        defer {
            AgentPair.stop(processes, grace: .zero, directory: directory)
            network.remove()
            for file in (try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? [] where file.contains(vm) {
                try? FileManager.default.removeItem(atPath: "/dev/shm/\(file)")
            }
            try? FileManager.default.removeItem(atPath: directory)
        }
        let certs = try runCLI(["certs", "init", "--dir", "\(directory)/certs", "--nodes", "primary,backup"])
        try #require(certs.status == 0, "\(certs.stderr)")
        try HostCommand.run(["sh", "-c", "truncate -s 64M \(directory)/p.img && mkfs.ext4 -q -F \(directory)/p.img && truncate -s 64M \(directory)/b.img"])
        let port = LoopbackPorts.free()
        let configs = try AgentPair.writeConfigs(
            in: directory, port: port, vm: vm, guest: TestGuest.image, cmdline: "understudy.run=counter-service \(network.guestCommandLine)",
            replicaDirectory: "/dev/shm/understudy-\(vm)-b", disks: ("\(directory)/p.img", "\(directory)/b.img"),
            taps: (network.taps[0], network.taps[1]), backupPeerAddress: "127.0.0.1:\(port + 1)",
            primaryExtra: "[backup]\nlisten = \"127.0.0.1:\(port + 1)\"\nreplica_dir = \"/dev/shm/understudy-\(vm)-p\"\n"
                + "[failover]\nwithout_witness = true\n[heartbeat]\ninterval_ms = 100\nmissed = 10\n",
            backupExtra: "[failover]\nwithout_witness = true\nreconnect_ms = 200\n[heartbeat]\ninterval_ms = 100\nmissed = 10\n")
        func status(_ config: String) -> AgentStatus? {
            guard let reply = try? runCLI(["status", "--config", config, "--json"]) else { return nil }
            return try? JSONDecoder().decode(AgentStatus.self, from: Data(reply.stdout.utf8))
        }

        processes.append(try AgentPair.start(["run", "--config", configs.backup, "--log-level", "info"], log: "\(directory)/backup.log"))
        let primary = try AgentPair.start(["run", "--config", configs.primary, "--log-level", "info"], log: "\(directory)/primary.log")
        processes.append(primary)
        let client = CounterClient(network: network)
        client.start()
        defer { client.stop() }
        try #require(client.waitForReplies(10, timeout: .seconds(120)), "the service never answered: \(client.errors)")
        try #require(eventually(within: .seconds(180), every: .milliseconds(200)) { status(configs.primary)?.primary?.state == .protecting },
                     "never protected: \(String(describing: status(configs.primary)))")
        #expect((try? String(contentsOfFile: "\(directory)/state-primary/role", encoding: .utf8)) == "primary\n")

        // SIGTERM: a switchover, then the process ends; the VM runs on the other node.
        let before = client.history.count
        kill(primary.processIdentifier, SIGTERM)
        try #require(eventually(within: .seconds(60), every: .milliseconds(200)) { !primary.isRunning }, "the primary did not stop after SIGTERM")
        #expect(primary.terminationStatus == 0)
        #expect((try? String(contentsOfFile: "\(directory)/state-primary/role", encoding: .utf8)) == "backup\n",
                "the stopped node handed the VM over: it is the backup now")
        #expect(status(configs.backup)?.role == .primary)
        #expect(client.waitForReplies(before + 10, timeout: .seconds(30)), "the client got nothing after the handover: \(client.errors)")
        #expect(client.reconnects == 0, "the client's connection survives the handover")
        let values = client.values
        #expect(zip(values, values.dropFirst()).allSatisfy { $0 < $1 }, "values strictly increase across the handover")

        // Restarted, the node follows its record: the backup of the node now running the VM.
        let restarted = try AgentPair.start(["run", "--config", configs.primary, "--log-level", "info"], log: "\(directory)/primary-2.log")
        processes.append(restarted)
        #expect(eventually(within: .seconds(30), every: .milliseconds(200)) { status(configs.primary)?.role == .backup }, "\(String(describing: status(configs.primary)))")
        #expect(eventually(within: .seconds(120), every: .milliseconds(200)) { status(configs.backup)?.primary?.state == .protecting }, "\(String(describing: status(configs.backup)))")

        // SIGHUP: the log level applies at once, the rest waits for a restart.
        let text = try String(contentsOfFile: configs.backup, encoding: .utf8)
        try (text + "\n[log]\nlevel = \"debug\"\n").replacingOccurrences(of: "memory_mib = 128", with: "memory_mib = 256")
            .write(toFile: configs.backup, atomically: true, encoding: .utf8)
        kill(processes[0].processIdentifier, SIGHUP)
        let reloaded = eventually(within: .seconds(10), every: .milliseconds(200)) {
            let log = (try? String(contentsOfFile: "\(directory)/backup.log", encoding: .utf8)) ?? ""
            return log.contains("configuration reloaded") && log.contains("log.level") && log.contains("vm.memory_mib")
        }
        #expect(reloaded, "no reload in the log")
        #expect(processes[0].isRunning, "SIGHUP does not stop the agent")
    }
}

/// Every example configuration under Deploy/examples is valid as shipped (its disk image, which
/// the configuration checks for, stands in as an empty file of a plausible size).
@Suite struct ExampleConfigurationTests {
    @Test func everyExampleLoadsAndTheRunKeysAreSet() throws {
        let examples = CounterGuestImage.checkout.appendingPathComponent("Deploy/examples").path
        let files = try #require(FileManager.default.enumerator(atPath: examples)).compactMap { $0 as? String }.filter { $0.hasSuffix(".toml") }
        #expect(files.count >= 6, "\(files)")
        let disk = NSTemporaryDirectory() + "understudy-example-\(UUID().uuidString.prefix(8)).img"
        defer { try? FileManager.default.removeItem(atPath: disk) }
        try HostCommand.run(["truncate", "-s", "64M", disk])
        for file in files {
            let text = try String(contentsOfFile: "\(examples)/\(file)", encoding: .utf8)
            let local = try #require(text.range(of: #"disk_image = "[^"]*""#, options: .regularExpression).map {
                text.replacingCharacters(in: $0, with: "disk_image = \"\(disk)\"")
            }, "\(file) names no disk")
            do {
                let configuration = try AgentConfiguration(document: TOMLDocument(parsing: local, source: file))
                #expect(configuration.role != nil, "\(file): understudy run needs node.role")
                _ = try configuration.primary()
                _ = try configuration.backup()
            } catch {
                Issue.record("\(file): \(error)")
            }
        }
    }
}
