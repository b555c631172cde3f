import Foundation
import Logging
import UnderstudyAgent
import UnderstudyProtocol
import UnderstudyHarness
import UnderstudySystem
import UnderstudyTransport
#if canImport(Glibc)
import Glibc
#endif

/// `understudy-bench --wan`: a disaster-recovery replica over a thin, long link. Real agents
/// (`understudy primary` and `understudy backup`) protect the test guest through a
/// `LinkEmulator`, and everything is read from `understudy status --json`:
///
/// 1. wire bytes per second the checkpoints need against the guest's dirty rate, with LZ4 and
///    LZ4 HC (loopback, no emulated link: this is demand, not what a link allows), measured once
///    the guest's dirtying loop runs (boot writes far more);
/// 2. the replica's lag (asynchronous mode) against the link's bandwidth, 40 ms one way, the
///    interval adapting between 25 ms and 2 s;
/// 3. catch-up after link cuts of 10, 30 and 120 s, the guest serving requests (disk writes) all along.
struct WANBench {
    let seconds: Double
    let loads: [Int]
    let bandwidthsMbit: [Double]
    let cutsSeconds: [Int]
    static let delay = Duration.milliseconds(40)

    init(quick: Bool) {
        seconds = quick ? 3 : 6
        loads = quick ? [0, 5000] : [0, 1000, 5000, 20000]
        bandwidthsMbit = quick ? [20, 2] : [50, 20, 10, 5, 2]
        cutsSeconds = quick ? [10] : [10, 30, 120]
    }

    func run() throws -> [String: Any] {
        let temporary = try TemporaryDirectory("wanbench")
        defer { temporary.remove() }
        let workspace = temporary.path
        _ = try CertificateAuthority.initialize(directory: "\(workspace)/certs", nodes: ["primary", "backup"])
        let demand = try wireBytesAgainstDirtyRate(workspace)
        let content = try compressionOnMixedContent(workspace)
        let lag = try lagAgainstBandwidth(workspace)
        let catchUp = try catchUpAfterCuts(workspace)
        return ["linkDelayMs": Self.delay.seconds * 1000, "wireBytesAgainstDirtyRate": demand, "compressionOnMixedContent": content,
                "lagAgainstBandwidth": lag,
                "catchUpAfterCut": catchUp, "guest": ["memoryMiB": 128, "accelerator": "tcg"]]
    }

    // MARK: 1. Demand

    private func wireBytesAgainstDirtyRate(_ workspace: String) throws -> [[String: Any]] {
        var rows: [[String: Any]] = []
        for load in loads {
            for compression in ["lz4", "lz4hc"] {
                let pair = try BenchPair(workspace: workspace, name: "demand-\(load)-\(compression)",
                                         cmdline: "understudy.run=counter understudy.dirty_pages_per_sec=\(load) understudy.dirty_mib=32",
                                         primaryReplication: "compression = \"\(compression)\"")
                defer { pair.stop() }
                try pair.waitUntilProtected()
                try pair.waitForCounter()
                let (first, firstCPU) = (try pair.primaryStatus(), pair.primaryCPUSeconds())
                let started = ContinuousClock.now
                Thread.sleep(forTimeInterval: seconds)
                let (last, lastCPU) = (try pair.primaryStatus(), pair.primaryCPUSeconds())
                let elapsed = (ContinuousClock.now - started).seconds
                let wire = Double((last?.wireBytes ?? 0) - (first?.wireBytes ?? 0)) / elapsed
                let dirty = Double((last?.rawBytes ?? 0) - (first?.rawBytes ?? 0)) / 4096 / elapsed
                let row: [String: Any] = [
                    "configuredDirtyPagesPerSecond": load, "compression": compression,
                    "dirtyPagesPerSecond": dirty, "wireBytesPerSecond": wire, "wireBytesPerDirtyPage": dirty > 0 ? wire / dirty : 0,
                    "checkpointsPerSecond": last?.checkpointsPerSecond ?? 0,
                    "primaryAgentCpuPercent": (lastCPU - firstCPU) / elapsed * 100,
                ]
                log(String(format: "demand: %5d pages/s configured, %@: %7.0f dirty pages/s, %8.0f wire B/s (%6.0f B/page), agent CPU %3.0f%%",
                           load, compression, dirty, wire, dirty > 0 ? wire / dirty : 0, row["primaryAgentCpuPercent"] as! Double))
                rows.append(row)
            }
        }
        return rows
    }

    /// The counter guest writes one word per page, which any mode shrinks to a few bytes: LZ4 HC
    /// shows what it buys on a synthetic guest writing text, binaries and sparse updates instead
    /// (in process, over loopback TLS), with the encoding CPU time it costs.
    private func compressionOnMixedContent(_ workspace: String) throws -> [[String: Any]] {
        let identity = VMIdentity(id: "wanbench-mixed", memorySize: 64 << 20)
        var logger = Logger(label: "wanbench")
        logger.logLevel = .error
        var rows: [[String: Any]] = []
        for compression in [CompressionMode.fast, .high(level: CompressionMode.defaultHighLevel)] {
            let backup = try BenchBackup(
                configuration: BackupConfiguration(nodeName: "backup", listen: Endpoint(host: "127.0.0.1", port: 0),
                                                   tls: TLSConfiguration(directory: "\(workspace)/certs", node: "backup", peer: "primary"),
                                                   identity: identity, replicaDirectory: "/dev/shm/understudy-wanbench-mixed-\(UUID().uuidString.prefix(6))"),
                logger: logger)
            defer {
                backup.stop()
                try? FileManager.default.removeItem(atPath: backup.receiver.store.directory)
            }
            let guest = SyntheticGuest(identity: identity, pagesPerCheckpoint: 500, mix: [.text, .binary, .sparseUpdate, .zero], seed: 11)
            var configuration = PrimaryConfiguration(nodeName: "primary", backup: backup.endpoint,
                                                     tls: TLSConfiguration(directory: "\(workspace)/certs", node: "primary", peer: "backup"),
                                                     interval: .zero)
            configuration.compression = compression
            let primary = PrimaryReplicator(source: guest, configuration: configuration, logger: logger)
            defer { primary.stop() }
            try primary.start()
            let before = primary.statistics
            let cpu = ProcessCPU()
            try primary.runCheckpoints(count: 200)
            try primary.drain(timeout: .seconds(60))
            let cpuSeconds = cpu.elapsed
            let after = primary.statistics
            let pages = after.dirtyPages - before.dirtyPages
            let row: [String: Any] = [
                "compression": compression.description, "pages": pages,
                "wireBytesPerPage": Double(after.wireBytes - before.wireBytes) / Double(pages),
                "cpuMicrosecondsPerPage": cpuSeconds * 1e6 / Double(pages),
            ]
            log(String(format: "mixed content, %@: %.0f wire bytes per page, %.1f µs of CPU per page (encode, send, and the in-process backup)",
                       compression.description, row["wireBytesPerPage"] as! Double, row["cpuMicrosecondsPerPage"] as! Double))
            rows.append(row)
        }
        return rows
    }

    // MARK: 2. Lag

    private func lagAgainstBandwidth(_ workspace: String) throws -> [[String: Any]] {
        let link = LinkEmulator.Shape(oneWayDelay: Self.delay)
        let pair = try BenchPair(workspace: workspace, name: "lag", cmdline: "understudy.run=counter understudy.dirty_pages_per_sec=5000 understudy.dirty_mib=32",
                                 primaryReplication: "mode = \"asynchronous\"\nrpo_ms = 5000\ninterval_max_ms = 2000", link: link)
        defer { pair.stop() }
        try pair.waitUntilProtected()
        try pair.waitForCounter()
        var rows: [[String: Any]] = []
        for mbit in bandwidthsMbit {
            let bytesPerSecond = Int(mbit * 1e6 / 8)
            pair.link!.setShape(LinkEmulator.Shape(oneWayDelay: Self.delay, bytesPerSecond: bytesPerSecond))
            Thread.sleep(forTimeInterval: 3)   // the interval adapts
            var lags: [Double] = []
            let first = try pair.primaryStatus()
            let started = ContinuousClock.now
            while ContinuousClock.now < started + .seconds(seconds * 2) {
                if let lag = try pair.primaryStatus()?.lagMilliseconds { lags.append(lag) }
                Thread.sleep(forTimeInterval: 0.1)
            }
            let last = try pair.primaryStatus()
            let elapsed = (ContinuousClock.now - started).seconds
            lags.sort()
            let row: [String: Any] = [
                "linkMbitPerSecond": mbit, "lagP50Ms": percentile(lags, 0.5), "lagP99Ms": percentile(lags, 0.99), "lagMaxMs": lags.last ?? 0,
                "intervalMs": last?.intervalMilliseconds ?? 0, "intervalReason": last?.intervalReason ?? "",
                "wireBytesPerSecond": Double((last?.wireBytes ?? 0) - (first?.wireBytes ?? 0)) / elapsed,
                "linkBudgetBytesPerSecond": last?.linkBudgetBytesPerSecond ?? 0,
                "objectiveExceeded": last?.recoveryPointExceeded ?? false,
            ]
            log(String(format: "lag: %4.0f Mbit/s: lag p50 %5.0f ms, p99 %5.0f ms; interval %4.0f ms (%@)", mbit, row["lagP50Ms"] as! Double,
                       row["lagP99Ms"] as! Double, row["intervalMs"] as! Double, row["intervalReason"] as! String))
            rows.append(row)
        }
        return rows
    }

    // MARK: 3. Catch-up

    private func catchUpAfterCuts(_ workspace: String) throws -> [[String: Any]] {
        let network = try PairNetwork(tapCount: 2)
        defer { network.remove() }
        let link = LinkEmulator.Shape(oneWayDelay: Self.delay, bytesPerSecond: 2_500_000)
        let pair = try BenchPair(workspace: workspace, name: "catchup", cmdline: "understudy.run=counter-service \(network.guestCommandLine)",
                                 primaryReplication: "mode = \"asynchronous\"\nrpo_ms = 5000\ninterval_max_ms = 2000\nbandwidth_limit = \"16Mbit\"",
                                 link: link, network: network)
        defer { pair.stop() }
        try pair.waitUntilProtected()
        let client = CounterClient(network: network)
        client.start()
        defer { client.stop() }
        guard client.waitForReplies(20, timeout: .seconds(120)) else { throw BenchError("the guest service never answered: \(client.errors)") }
        var rows: [[String: Any]] = []
        for cut in cutsSeconds {
            let before = try pair.primaryStatus()
            let sessions = before?.sessions ?? 0
            let replies = client.history.count
            pair.link!.cut()
            Thread.sleep(forTimeInterval: Double(cut))
            let journal = try pair.primaryStatus()?.catchUpJournalBytes ?? 0
            let repliesDuringCut = client.history.count - replies
            let restored = ContinuousClock.now
            pair.link!.restore()
            guard let after = pair.waitForPrimary(timeout: .seconds(600), {
                ($0.sessions ?? 0) > sessions && $0.catchUpSeconds != nil
            }) else { throw BenchError("no acknowledged catch-up after the \(cut) s cut; see \(pair.directory)") }
            let row: [String: Any] = [
                "cutSeconds": cut, "sessionStart": after.sessionStart ?? "",
                "restoreToAcknowledgedSeconds": (ContinuousClock.now - restored).seconds,
                "catchUpCheckpointSeconds": after.catchUpSeconds ?? 0,
                "catchUpPages": after.catchUpPages ?? 0, "catchUpDiskWrites": after.catchUpDiskWrites ?? 0,
                "catchUpWireBytes": after.catchUpWireBytes ?? 0, "journalBytesAtRestore": journal,
                "clientRepliesDuringCut": repliesDuringCut,
            ]
            log(String(format: "catch-up after a %3d s cut: %@; %d pages, %d disk writes (journal %d bytes), %.1f MB on the wire; "
                       + "checkpoint acknowledged %.2f s after its capture, %.2f s after the link came back", cut, row["sessionStart"] as! String,
                       row["catchUpPages"] as! Int, row["catchUpDiskWrites"] as! Int, journal, Double(row["catchUpWireBytes"] as! Int) / 1e6,
                       row["catchUpCheckpointSeconds"] as! Double, row["restoreToAcknowledgedSeconds"] as! Double))
            rows.append(row)
            Thread.sleep(forTimeInterval: 3)
        }
        return rows
    }


    private func log(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }
}

/// One primary and one backup agent of the bench, the replication stream through a `LinkEmulator` when given.
private final class BenchPair {
    let directory: String
    let vm: String
    let link: LinkEmulator?
    private let configs: (primary: String, backup: String)
    private var processes: [Process] = []
    private let understudy = productsDirectory().appendingPathComponent("understudy").path

    init(workspace: String, name: String, cmdline: String, primaryReplication: String, link shape: LinkEmulator.Shape? = nil,
         network: PairNetwork? = nil) throws {
        directory = "\(workspace)/\(name)"
        vm = "wb\(UUID().uuidString.prefix(6).lowercased())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: "\(directory)/certs", withDestinationPath: "\(workspace)/certs")
        let port = LoopbackPorts.free()
        link = try shape.map { try LinkEmulator(target: ("127.0.0.1", port), shape: $0) }
        if network != nil {
            try HostCommand.run(["sh", "-c", "truncate -s 64M \(directory)/primary-disk.img && mkfs.ext4 -q -F \(directory)/primary-disk.img "
                            + "&& truncate -s 64M \(directory)/backup-disk.img"])
        }
        let heartbeat = "[heartbeat]\ninterval_ms = 100\nmissed = 10\n"
        let directory = directory
        configs = try AgentPair.writeConfigs(
            in: directory, port: port, vm: vm, guest: TestGuest.image, cmdline: cmdline, replicaDirectory: "/dev/shm/understudy-wanbench-\(vm)",
            disks: network.map { _ in ("\(directory)/primary-disk.img", "\(directory)/backup-disk.img") },
            taps: network.map { ($0.taps[0], $0.taps[1]) },
            primaryExtra: primaryReplication + "\n" + heartbeat + "[failover]\nreconnect_ms = 200\n",
            backupExtra: heartbeat + "[failover]\nautomatic = false\n")
        if let link {
            let text = try String(contentsOfFile: self.configs.primary, encoding: .utf8)
            try text.replacingOccurrences(of: "address = \"127.0.0.1:\(port)\"", with: "address = \"127.0.0.1:\(link.port)\"")
                .write(toFile: configs.primary, atomically: true, encoding: .utf8)
        }
        do {
            processes.append(try AgentPair.start(understudy, ["backup", "--config", configs.backup, "--log-level", "info"], log: "\(directory)/backup.log"))
            Thread.sleep(forTimeInterval: 0.3)
            processes.append(try AgentPair.start(understudy, ["primary", "--config", configs.primary, "--log-level", "info"], log: "\(directory)/primary.log"))
        } catch {
            stop()
            throw error
        }
    }

    /// The primary node's status (nil when it does not answer as the primary).
    func primaryStatus() throws -> PrimaryStatus? {
        let reply = try HostCommand.execute(understudy, ["status", "--config", configs.primary, "--json"])
        return (try? JSONDecoder().decode(AgentStatus.self, from: Data(reply.stdout.utf8)))?.primary
    }

    func waitForPrimary(timeout: Duration, _ predicate: (PrimaryStatus) -> Bool) -> PrimaryStatus? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let status = try? primaryStatus(), predicate(status) { return status }
            Thread.sleep(forTimeInterval: 0.2)
        }
        return nil
    }

    func waitUntilProtected() throws {
        guard waitForPrimary(timeout: .seconds(300), { $0.state == .protecting && ($0.committedEpoch ?? 0) >= 20 }) != nil else {
            throw BenchError("the primary never protected the VM; see \(directory)")
        }
    }

    /// Waits until the counter guest runs its dirtying loop (it prints COUNTER lines), and a
    /// second more: boot writes far more memory than any configured load.
    func waitForCounter() throws {
        let deadline = ContinuousClock.now + .seconds(120)
        while ContinuousClock.now < deadline {
            let serial = (try? String(contentsOfFile: "\(directory)/run-primary/serial.log", encoding: .utf8)) ?? ""
            if serial.contains("COUNTER") {
                Thread.sleep(forTimeInterval: 1)
                return
            }
            if serial.contains("counter exited") { throw BenchError("the counter guest exited; see \(directory)/run-primary/serial.log") }
            Thread.sleep(forTimeInterval: 0.2)
        }
        throw BenchError("the counter guest printed no COUNTER within 120 s; see \(directory)/run-primary/serial.log")
    }

    /// CPU seconds the primary agent has used (user + system).
    func primaryCPUSeconds() -> Double {
        guard processes.count > 1 else { return 0 }
        return ProcessCPUTime.seconds(pid: processes[1].processIdentifier) ?? 0
    }

    func stop() {
        AgentPair.stop(processes, grace: .seconds(5), directory: directory)
        processes.removeAll()
        link?.close()
        try? FileManager.default.removeItem(atPath: "/dev/shm/understudy-wanbench-\(vm)")
        for file in (try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? [] where file.hasPrefix("understudy-\(vm)-") {
            try? FileManager.default.removeItem(atPath: "/dev/shm/\(file)")
        }
    }
}
