import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import UnderstudyAgent
import UnderstudyHarness
import UnderstudyQEMU
import UnderstudySystem
import UnderstudyTransport

/// `--pgbench`: a real database under protection. The Debian guest (`DebianGuest`, built by
/// Deploy/guest/build-debian.sh: 1 GiB RAM, PostgreSQL 15, `bench` at scale 5, its root disk a
/// fresh copy of the cached image per boot) runs pgbench's TPC-B from a client namespace
/// (`PairNetwork`), pgbench itself chrooted in the guest's build tree. One boot per
/// configuration, all in one run:
/// - bare: the same VM with the same devices, unprotected (`UnprotectedVM`: NBD disk and output
///   gate in this process, no checkpoints), as `--output-commit` measures its baseline;
/// - protected by the two `understudy` agents an operator runs, their configurations differing
///   only in `[replication]` overrides: epochs on the interval only, then output-triggered epochs.
///
/// Per configuration: a warm-up, then `pgbench -c 4 -j 2` for a fixed time (the window the
/// replication figures cover), then one connection sending `SELECT 1` one at a time (the round
/// trip a request pays). Protected, also the round trips' checkpoints (`round_trip_checkpoints`:
/// their rate, pages, mean pause and ACK latency, the share that stopped without a look) and,
/// when the measured window set the session's longest pause, its phases (`longest_pause`), and
/// the initial synchronisation, which runs while the guest boots (`initial_sync_seconds`,
/// `initial_sync_pages`, `initial_sync_wire_mbytes`: the root disk's data and the memory).
///
/// Bare, also the round trip of a guest that idled `idleMilliseconds` first (`round_trip_after_idle_ms_p50`:
/// `\sleep` then `SELECT 1`, less the `\sleep` alone): a protected guest idles about that long
/// between its reply and the next request (its checkpoint and acknowledgement), and under TCG a
/// guest answers more slowly after idling (measured: 0.6–0.7 ms back to back, 1.0–1.7 ms after 3 ms, 2.7 ms
/// after 20 ms). `round_trip_added_ms_p50_after_idle` is the protected round trip less that one:
/// what the protection's own steps add, the emulator's slower wake taken out.
struct PGBench {
    let warmupSeconds: Int
    let measureSeconds: Int
    let roundTripSeconds: Int
    /// What runs, in order: `plan` with `settings` added to the output-triggered configuration's
    /// `[replication]` keys, and without `protected_interval` when `withInterval` is false.
    let runPlan: [Configuration]

    /// - Parameters:
    ///   - settings: more `[replication]` keys for the output-triggered configuration (`--replication
    ///     min_gap_ms=2,max_checkpoints_per_second=250`), to tune them with the bench.
    ///   - withInterval: whether to run `protected_interval` (`--without-interval` leaves it out).
    init(quick: Bool, settings: [(key: String, value: String)] = [], withInterval: Bool = true) {
        warmupSeconds = quick ? 3 : 5
        measureSeconds = quick ? 10 : 30
        roundTripSeconds = quick ? 5 : 10
        runPlan = Self.plan.compactMap { configuration in
            if configuration.name == "protected_interval" && !withInterval { return nil }
            guard configuration.name == "protected_output_triggered" else { return configuration }
            return Configuration(name: configuration.name, replication: (configuration.replication ?? []) + settings)
        }
    }

    static let clients = 4
    static let threads = 2
    /// The idle gap before each bare `SELECT 1` of `round_trip_after_idle_ms_p50`: about what a
    /// protected guest idles between its reply and the next request here (2.8–3.1 ms at p50,
    /// timed along the path).
    static let idleMilliseconds = 3
    /// The `[replication]` key that turns output-triggered epochs on or off.
    static let outputTriggeredKey = "output_triggered"

    /// One boot of the guest: bare (no `replication`) or protected with these `[replication]` keys.
    struct Configuration {
        let name: String
        let replication: [(key: String, value: String)]?
    }

    /// Bare, interval-only epochs, output-triggered epochs.
    static let plan = [
        Configuration(name: "bare", replication: nil),
        Configuration(name: "protected_interval", replication: [(outputTriggeredKey, "false")]),
        Configuration(name: "protected_output_triggered", replication: [(outputTriggeredKey, "true")]),
    ]

    func run(logger: Logger) throws -> [String: Any] {
        let guest = DebianGuest()
        try guest.requireBuilt()
        guard let preload = PreloadLibrary.locate() else {
            throw BenchError("\(PreloadLibrary.fileName) not found next to the bench: build it too (swift build --product UnderstudyPreload)")
        }
        let understudy = productsDirectory().appendingPathComponent("understudy").path
        guard FileManager.default.isExecutableFile(atPath: understudy) else {
            throw BenchError("no understudy binary at \(understudy): build it (swift build --product understudy)")
        }
        let started = ContinuousClock.now
        let temporary = try TemporaryDirectory("pgbench")
        defer { temporary.remove() }
        _ = try CertificateAuthority.initialize(directory: "\(temporary.path)/certs", nodes: ["primary", "backup"])
        let network = try PairNetwork(tapCount: 2)
        defer { network.remove() }
        guard network.guestAddress == DebianGuest.address else {
            throw BenchError("the Debian guest's address \(DebianGuest.address) is not the test network's \(network.guestAddress)")
        }
        // The one-at-a-time script lives in the tree, where the chrooted pgbench reads it.
        let scratch = "/tmp/understudy-pgbench-\(getpid())"
        try FileManager.default.createDirectory(atPath: guest.tree + scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: guest.tree + scratch) }
        try "SELECT 1;\n".write(toFile: "\(guest.tree)\(scratch)/select1.sql", atomically: true, encoding: .utf8)
        try "\\sleep \(Self.idleMilliseconds) ms\n".write(toFile: "\(guest.tree)\(scratch)/idle.sql", atomically: true, encoding: .utf8)
        try "\\sleep \(Self.idleMilliseconds) ms\nSELECT 1;\n".write(toFile: "\(guest.tree)\(scratch)/idle-select1.sql", atomically: true, encoding: .utf8)

        let plan = runPlan
        log("pgbench bench: Debian 12 guest, \(DebianGuest.memoryMiB) MiB, TCG, PostgreSQL 15, TPC-B scale 5, -c \(Self.clients) -j \(Self.threads), "
            + "\(warmupSeconds) s warm-up + \(measureSeconds) s measured, round trips for \(roundTripSeconds) s; configurations: "
            + plan.map(\.name).joined(separator: ", "))
        let loadAtStart = VMBench.loadAverage()

        var results: [String: [String: Any]] = [:]
        for configuration in plan {
            let run = Run(bench: self, configuration: configuration, guest: guest, network: network, preload: preload,
                          understudy: understudy, workspace: temporary.path, scratch: scratch, logger: logger)
            results[configuration.name] = try run.measure()
        }

        var output: [String: Any] = ["configurations": results, "order": plan.map(\.name)]
        let bare = results["bare"]
        let triggered = results["protected_output_triggered"]
        if let bare, let triggered, let a = bare["tps"] as? Double, let c = triggered["tps"] as? Double, a > 0 {
            output["tps_ratio"] = c / a
        }
        if let bare, let triggered, let a = bare["round_trip_ms_p50"] as? Double, let c = triggered["round_trip_ms_p50"] as? Double {
            output["round_trip_added_ms_p50"] = c - a
        }
        if let bare, let triggered, let a = bare["round_trip_after_idle_ms_p50"] as? Double, let c = triggered["round_trip_ms_p50"] as? Double {
            output["round_trip_added_ms_p50_after_idle"] = c - a
        }
        output["guest"] = [
            "image": guest.directory, "memoryMiB": DebianGuest.memoryMiB, "accelerator": "tcg", "vcpus": 1,
            "pgbench": "TPC-B scale 5, -c \(Self.clients) -j \(Self.threads)", "warmupSeconds": warmupSeconds,
            "measureSeconds": measureSeconds, "roundTripSeconds": roundTripSeconds,
            "hostLoadAverageAtStart": loadAtStart, "hostLoadAverageAtEnd": VMBench.loadAverage(),
            "runSeconds": (ContinuousClock.now - started).seconds,
        ] as [String: Any]
        printSummary(output, plan: plan)
        return output
    }

    private func printSummary(_ output: [String: Any], plan: [Configuration]) {
        let results = output["configurations"] as! [String: [String: Any]]
        var text = "\npgbench (TPC-B scale 5, -c \(Self.clients) -j \(Self.threads), \(measureSeconds) s) on the Debian guest\n"
        text += "configuration                   tps   lat ms  rt p50 ms  ckpt/s  pause p50   p99    max  wire MB/s  agent CPU  boot s\n"
        for configuration in plan {
            guard let row = results[configuration.name] else { continue }
            func value(_ key: String) -> Double { row[key] as? Double ?? 0 }
            text += configuration.name.padding(toLength: 28, withPad: " ", startingAt: 0)
            text += String(format: " %6.1f  %7.1f  %9.2f  %6.1f  %9.2f %6.2f %6.1f  %9.2f  %8.1f%%  %6.1f\n", value("tps"), value("latency_ms_avg"),
                           value("round_trip_ms_p50"), value("checkpoints_per_second"), value("pause_ms_p50"), value("pause_ms_p99"),
                           value("pause_ms_max"), value("wire_mbytes_per_second"), value("agent_cpu_percent"), value("boot_seconds"))
        }
        if let ratio = output["tps_ratio"] as? Double { text += String(format: "tps_ratio (output-triggered ÷ bare) %.3f\n", ratio) }
        if let added = output["round_trip_added_ms_p50"] as? Double { text += String(format: "round_trip_added_ms_p50 %.2f ms\n", added) }
        if let idle = results["bare"]?["round_trip_after_idle_ms_p50"] as? Double, let added = output["round_trip_added_ms_p50_after_idle"] as? Double {
            text += String(format: "bare round trip after %d ms idle %.2f ms; round_trip_added_ms_p50_after_idle %.2f ms\n", Self.idleMilliseconds, idle, added)
        }
        for configuration in plan {
            guard let phase = results[configuration.name]?["round_trip_checkpoints"] as? [String: Double] else { continue }
            text += String(format: "%@ round trips: %.0f checkpoints/s of %.0f pages, pause %.2f ms, ACK %.2f ms (means), %.0f %% without a look\n",
                           configuration.name, phase["checkpoints_per_second"] ?? 0, phase["dirty_pages_mean"] ?? 0, phase["pause_ms_mean"] ?? 0,
                           phase["ack_ms_mean"] ?? 0, (phase["skipped_look_fraction"] ?? 0) * 100)
        }
        log(text)
    }

    fileprivate func log(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }
}

// MARK: - One boot

extension PGBench {
    /// One configuration's boot, workload and measurements; everything it starts is stopped and
    /// removed before `measure` returns or throws.
    private struct Run {
        let bench: PGBench
        let configuration: Configuration
        let guest: DebianGuest
        let network: PairNetwork
        let preload: String
        let understudy: String
        let workspace: String
        let scratch: String
        let logger: Logger

        var directory: String { "\(workspace)/\(configuration.name)" }

        func measure() throws -> [String: Any] {
            let vm = "pg\(UUID().uuidString.prefix(6).lowercased())"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: "\(directory)/certs", withDestinationPath: "\(workspace)/certs")
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let primaryDisk = "\(directory)/primary-disk.img"
            let backupDisk = "\(directory)/backup-disk.img"
            try guest.copyRootDisk(to: primaryDisk)
            let replication = configuration.replication
            if replication != nil {
                let size = (try FileManager.default.attributesOfItem(atPath: guest.rootImage)[.size] as? NSNumber)?.intValue ?? 0
                try HostCommand.run(["truncate", "-s", "\(size)", backupDisk])
            }
            let port = LoopbackPorts.free(span: 17)
            let metricsPort = port + 16
            let heartbeat = "[heartbeat]\ninterval_ms = 100\nmissed = 10\n"
            let configs = try AgentPair.writeConfigs(
                in: directory, port: port, vm: vm, guest: (guest.kernel, guest.initrd), cmdline: DebianGuest.commandLine,
                replicaDirectory: "/dev/shm/understudy-\(vm)-replica", disks: (primaryDisk, backupDisk),
                taps: (network.taps[0], network.taps[1]),
                primaryExtra: (replication ?? []).map { "\($0.key) = \($0.value)\n" }.joined()
                    + "\(heartbeat)[metrics]\nlisten = \"127.0.0.1:\(metricsPort)\"\n",
                backupExtra: heartbeat + "[failover]\nautomatic = false\n", memoryMiB: DebianGuest.memoryMiB)
            defer {
                for file in (try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? [] where file.hasPrefix("understudy-\(vm)-") {
                    try? FileManager.default.removeItem(atPath: "/dev/shm/\(file)")
                }
            }
            let host = try start(configs: configs, metrics: Endpoint(host: "127.0.0.1", port: metricsPort))
            defer { host.stop() }
            let booted = ContinuousClock.now
            try guest.waitUntilPostgresAnswers(namespace: network.namespace, timeout: .seconds(600), failed: host.failure)
            let bootSeconds = (ContinuousClock.now - booted).seconds
            bench.log(String(format: "%@: PostgreSQL answered %.1f s after %@", configuration.name, bootSeconds,
                             replication == nil ? "QEMU started" : "the agents started"))
            try host.waitUntilReady()

            _ = try pgbench(["-c", "\(PGBench.clients)", "-j", "\(PGBench.threads)", "-T", "\(bench.warmupSeconds)"], host: host)
            let before = try host.snapshot()
            let windowStart = ContinuousClock.now
            let measured = try pgbench(["-n", "-c", "\(PGBench.clients)", "-j", "\(PGBench.threads)", "-T", "\(bench.measureSeconds)"], host: host)
            let seconds = (ContinuousClock.now - windowStart).seconds
            let after = try host.snapshot()
            let roundTripsStart = ContinuousClock.now
            let roundTrips = try roundTripsMilliseconds(script: "select1", host: host).sorted()
            let roundTripsSeconds = (ContinuousClock.now - roundTripsStart).seconds
            let afterRoundTrips = try host.snapshot()
            // Bare: the same round trip after an idle gap, and the gap alone.
            let afterIdle = try replication == nil
                ? percentile(try roundTripsMilliseconds(script: "idle-select1", host: host).sorted(), 0.5)
                    - percentile(try roundTripsMilliseconds(script: "idle", host: host).sorted(), 0.5)
                : nil
            try host.check()

            var row: [String: Any] = [
                "tps": measured.tps, "latency_ms_avg": measured.latencyMillisecondsAverage, "transactions": measured.transactions,
                "failed_transactions": measured.failedTransactions, "boot_seconds": bootSeconds,
                "round_trip_ms_p50": percentile(roundTrips, 0.5), "round_trip_ms_p99": percentile(roundTrips, 0.99),
                "round_trips": roundTrips.count,
                "agent_cpu_percent": (after.cpuSeconds - before.cpuSeconds) / seconds * 100,
                "replication": (replication ?? []).map { "\($0.key) = \($0.value)" },
            ]
            if let afterIdle { row["round_trip_after_idle_ms_p50"] = afterIdle }
            if let sync = before.sync {
                row["initial_sync_seconds"] = sync.seconds
                row["initial_sync_pages"] = sync.pages
                row["initial_sync_wire_mbytes"] = Double(sync.wireBytes) / 1e6
            }
            if let metricsBefore = before.metrics, let metricsAfter = after.metrics {
                let window = CheckpointWindow(before: metricsBefore, after: metricsAfter, sessionMaxBefore: before.pauseMaxMilliseconds,
                                              sessionMaxAfter: after.pauseMaxMilliseconds, seconds: seconds)
                row["pause_ms_p50"] = window.pauseMillisecondsP50
                row["pause_ms_p99"] = window.pauseMillisecondsP99
                row["pause_ms_max"] = window.pauseMillisecondsMax
                row["pause_ms_max_exact"] = window.pauseMaxIsExact
                // Where the window's longest pause went, when it was the window's own.
                if window.pauseMaxIsExact, let longest = after.longestPause { row["longest_pause"] = longest }
                row["checkpoints_per_second"] = window.checkpointsPerSecond
                row["checkpoints_by_reason"] = window.checkpointsByReason
                row["wire_mbytes_per_second"] = window.wireMegabytesPerSecond
            } else {
                for key in ["pause_ms_p50", "pause_ms_p99", "pause_ms_max", "checkpoints_per_second", "wire_mbytes_per_second"] { row[key] = 0.0 }
            }
            // Where a protected round trip goes, besides the guest's own answer: the checkpoints of
            // the one-at-a-time phase, their pause and their ACK latency (encode, send, the backup's seal).
            if let metricsBefore = after.metrics, let metricsAfter = afterRoundTrips.metrics {
                let window = CheckpointWindow(before: metricsBefore, after: metricsAfter, sessionMaxBefore: after.pauseMaxMilliseconds,
                                              sessionMaxAfter: afterRoundTrips.pauseMaxMilliseconds, seconds: roundTripsSeconds)
                let checkpoints = window.checkpointsPerSecond * roundTripsSeconds
                row["round_trip_checkpoints"] = [
                    "checkpoints_per_second": window.checkpointsPerSecond, "dirty_pages_mean": window.dirtyPagesMean ?? 0,
                    "pause_ms_mean": window.pauseMillisecondsMean ?? 0, "ack_ms_mean": window.ackMillisecondsMean ?? 0,
                    "skipped_look_fraction": checkpoints > 0 ? Double(afterRoundTrips.skippedLooks - after.skippedLooks) / checkpoints : 0,
                ]
            }
            bench.log(String(format: "%@: %.1f tps, latency %.1f ms, round trip p50 %.2f ms, agent CPU %.0f %%", configuration.name, measured.tps,
                             measured.latencyMillisecondsAverage, percentile(roundTrips, 0.5), row["agent_cpu_percent"] as! Double))
            return row
        }

        /// Boots the VM: bare, or under the agents.
        private func start(configs: (primary: String, backup: String), metrics: Endpoint) throws -> any Host {
            guard configuration.replication != nil else {
                return try BareHost(configuration: try AgentConfiguration(contentsOfFile: configs.primary), preload: preload, logger: logger)
            }
            return try AgentHost(understudy: understudy, configs: configs, directory: directory, metrics: metrics)
        }

        /// Runs the tree's pgbench against the guest from the client namespace.
        private func pgbench(_ arguments: [String], host: any Host) throws -> PGBenchOutput {
            let command = guest.treeCommand(namespace: network.namespace, [DebianGuest.clientProgram("pgbench"), "-h", DebianGuest.address,
                                                                           "-p", "\(DebianGuest.postgresPort)", "-U", DebianGuest.user]
                                            + arguments + [DebianGuest.database])
            let result = try HostCommand.execute("/usr/bin/env", command, timeout: .seconds(300))
            try host.check()
            guard result.status == 0, let output = PGBenchOutput(summary: result.stdout) else {
                throw BenchError("\(configuration.name): pgbench \(arguments.joined(separator: " ")) failed (exit \(result.status)): "
                                 + (result.stderr + result.stdout).split(separator: "\n").suffix(4).joined(separator: " | "))
            }
            return output
        }

        /// One connection running `script` (`select1`: one `SELECT 1` at a time) for the round trips'
        /// time: each transaction's latency from pgbench's log.
        private func roundTripsMilliseconds(script: String, host: any Host) throws -> [Double] {
            let prefix = "\(scratch)/rt-\(configuration.name)-\(script)"
            _ = try pgbench(["-n", "-c", "1", "-j", "1", "-T", "\(bench.roundTripSeconds)", "-f", "\(scratch)/\(script).sql",
                             "-l", "--log-prefix=\(prefix)"], host: host)
            let directory = guest.tree + scratch
            let logs = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix("rt-\(configuration.name)-\(script).") }
            defer { for file in logs { try? FileManager.default.removeItem(atPath: "\(directory)/\(file)") } }
            let latencies = try logs.flatMap { PGBenchOutput.latenciesMilliseconds(log: try String(contentsOfFile: "\(directory)/\($0)", encoding: .utf8)) }
            guard !latencies.isEmpty else { throw BenchError("\(configuration.name): pgbench wrote no transaction log under \(directory)") }
            return latencies
        }
    }

    /// What one measurement point reads from the host side.
    struct Snapshot {
        var cpuSeconds: Double
        var metrics: MetricsExposition?
        var pauseMaxMilliseconds: Double
        /// The session's longest pause phase by phase (the status's `longestPause`).
        var longestPause: [String: Double]? = nil
        /// Stops without a look before them so far (the status's `skippedLooks`).
        var skippedLooks = 0
        /// The initial synchronisation (disk and memory, while the guest boots): seconds, memory
        /// pages, and wire bytes of both.
        var sync: (seconds: Double, pages: Int, wireBytes: Int)? = nil
    }

    /// Where the VM runs: QEMU with its devices in this process (bare), or the agents.
    protocol Host {
        /// Why the VM cannot go on (a process exited), or nil.
        func failure() -> String?
        func waitUntilReady() throws
        func snapshot() throws -> Snapshot
        func stop()
    }
}

extension PGBench.Host {
    func check() throws { if let failure = failure() { throw BenchError(failure) } }
}

/// The bare VM (`UnprotectedVM`); "agent" CPU is this process's, which serves the disk and the gate.
private final class BareHost: PGBench.Host {
    private let vm: UnprotectedVM

    init(configuration: AgentConfiguration, preload: String, logger: Logger) throws {
        vm = try UnprotectedVM(configuration: configuration, preloadLibrary: preload, logger: logger)
    }

    func failure() -> String? { vm.failure }
    func waitUntilReady() throws {}
    func snapshot() throws -> PGBench.Snapshot {
        PGBench.Snapshot(cpuSeconds: ProcessCPUTime.seconds(pid: getpid()) ?? 0, metrics: nil, pauseMaxMilliseconds: 0)
    }
    func stop() { vm.stop() }
}

/// The protected VM: a backup and a primary `understudy` agent, as an operator runs them.
private final class AgentHost: PGBench.Host {
    private let processes: [Process]
    private let directory: String
    private let metrics: Endpoint

    init(understudy: String, configs: (primary: String, backup: String), directory: String, metrics: Endpoint) throws {
        self.directory = directory
        self.metrics = metrics
        var processes: [Process] = []
        do {
            processes.append(try AgentPair.start(understudy, ["backup", "--config", configs.backup, "--log-level", "info"], log: "\(directory)/backup.log"))
            Thread.sleep(forTimeInterval: 0.3)
            processes.append(try AgentPair.start(understudy, ["primary", "--config", configs.primary, "--log-level", "info"], log: "\(directory)/primary.log"))
        } catch {
            AgentPair.stop(processes, grace: .zero, directory: directory)
            throw error
        }
        self.processes = processes
    }

    func failure() -> String? {
        guard let exited = processes.first(where: { !$0.isRunning }) else { return nil }
        let log = exited === processes.first ? "backup.log" : "primary.log"
        let tail = ((try? String(contentsOfFile: "\(directory)/\(log)", encoding: .utf8)) ?? "").split(separator: "\n").suffix(4)
        return "the agent logging to \(log) exited (status \(exited.terminationStatus)): " + tail.joined(separator: " | ")
    }

    /// Protecting, not syncing: the measured window must cover checkpoints only.
    func waitUntilReady() throws {
        let deadline = ContinuousClock.now + .seconds(300)
        while status()?.state != .protecting {
            try check()
            guard ContinuousClock.now < deadline else { throw BenchError("the primary did not protect the VM within 300 s; see \(directory)") }
            Thread.sleep(forTimeInterval: 0.2)
        }
    }

    func snapshot() throws -> PGBench.Snapshot {
        guard let status = status() else { throw BenchError("the primary agent does not answer on its control socket") }
        return PGBench.Snapshot(cpuSeconds: processes.compactMap { ProcessCPUTime.seconds(pid: $0.processIdentifier) }.reduce(0, +),
                                metrics: try MetricsExposition.scrape(metrics), pauseMaxMilliseconds: status.pauseMillisecondsMax ?? 0,
                                longestPause: status.longestPause, skippedLooks: status.skippedLooks ?? 0,
                                sync: status.syncSeconds.map { ($0, status.syncPages ?? 0, status.syncWireBytes ?? 0) })
    }

    func stop() { AgentPair.stop(processes, directory: directory) }

    private func status() -> PrimaryStatus? {
        let reply = try? ControlServer.request("status", path: "\(directory)/run-primary/control.sock")
        return reply.flatMap { try? JSONDecoder().decode(AgentStatus.self, from: $0) }?.primary
    }
}
