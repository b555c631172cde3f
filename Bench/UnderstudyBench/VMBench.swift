import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import UnderstudyAgent
import UnderstudyProtocol
import UnderstudyQEMU
import UnderstudyHarness
import UnderstudySystem
import UnderstudyTransport

/// Checkpointing a real guest: the counter test guest under QEMU (TCG, 256 MiB), protected by a
/// `PrimaryReplicator` that ships to a `BackupReceiver` on loopback in the same process.
///
/// For each guest load (idle, 5000 and 50000 dirty pages/s), one booted guest:
/// 1. the counter's rate unprotected (no replication yet), then protected at 25 ms, then
///    unprotected again, `seconds` each, back to back (a shared host drifts);
/// 2. one replication session per checkpoint interval (25 ms above, then 10 and 100 ms),
///    `seconds` each: achieved checkpoints/s, pause percentiles, dirty pages, raw/wire bytes,
///    ack latency, and the counter's rate while protected;
/// 3. where the pause goes (no replication running): captures through the preload library's pause
///    channel alternating with stepwise QMP stop / save / cont ones, the baseline (see
///    `pauseBreakdown`).
///
/// The counter guest prints `COUNTER <n>` every 100 ms of guest time. Its rate of increase is
/// the guest's work rate (for the idle guest it only shows timer ticks: 100/s by design); the
/// number of lines per host second is the guest clock's speed relative to the host (QEMU stops
/// guest time while the VM is stopped, so every pause is time the guest's clock loses).
struct VMBench {
    /// Seconds per measurement.
    let seconds: Double
    /// Captures timed phase by phase, per load.
    let breakdownCaptures: Int
    /// Checkpoints per session at least: from fewer, a p99 is only the maximum (80 checkpoints
    /// of 100 ms in 8 s).
    let minimumCheckpoints: Int

    /// Only the device-state comparison (`--device-state`).
    let deviceStateOnly: Bool

    init(quick: Bool, deviceStateOnly: Bool = false) {
        self.deviceStateOnly = deviceStateOnly
        seconds = quick ? 3 : 8
        breakdownCaptures = quick ? 60 : 200
        minimumCheckpoints = quick ? 0 : 400
    }

    struct Load {
        let name: String
        let pagesPerSecond: Int
        let dirtyMiB: Int
    }

    static let loads = [
        Load(name: "idle", pagesPerSecond: 0, dirtyMiB: 64),
        Load(name: "5000 pages/s", pagesPerSecond: 5000, dirtyMiB: 64),
        Load(name: "50000 pages/s", pagesPerSecond: 50000, dirtyMiB: 64),
    ]
    static let intervalsMilliseconds = [10, 25, 100]
    /// The interval of the protected work-rate measurement.
    static let workRateInterval = 25
    static let memoryMiB: UInt64 = 256

    func run(logger: Logger) throws -> [String: Any] {
        // The same guest the tests use (built, or reused, by Deploy/guest/build-initramfs.sh).
        let image = TestGuest.image
        guard let preload = PreloadLibrary.locate() else {
            throw BenchError("\(PreloadLibrary.fileName) not found next to the bench: build it too "
                             + "(swift build -c release --product UnderstudyPreload, same --scratch-path)")
        }
        let temporary = try TemporaryDirectory("vmbench")
        defer { temporary.remove() }
        let workspace = temporary.path
        let certificates = "\(workspace)/certs"
        _ = try CertificateAuthority.initialize(directory: certificates, nodes: ["primary", "backup"])

        let deviceState = try deviceStateComparison(image: image, preload: preload, workspace: workspace,
                                                    certificates: certificates, logger: logger)
        if deviceStateOnly { return ["deviceState": deviceState] }
        var runs: [[String: Any]] = []
        var workRates: [[String: Any]] = []
        var breakdowns: [[String: Any]] = []
        var trackingMethod = "?"
        log(String(format: "vm bench: counter guest, TCG, %llu MiB, %.0f s per measurement, preload %@", VMBench.memoryMiB, seconds, preload))
        let loadAtStart = VMBench.loadAverage()
        if let oneMinute = Double(loadAtStart.split(separator: " ").first ?? ""), oneMinute > 1.0 {
            log("warning: host load average \(loadAtStart) on \(ProcessInfo.processInfo.activeProcessorCount) cores: pauses and rates will be noisy")
        }
        for load in VMBench.loads {
            let result = try runLoad(load, image: image, preload: preload, workspace: workspace, certificates: certificates, logger: logger)
            runs += result.runs
            workRates.append(result.workRate)
            breakdowns.append(result.breakdown)
            trackingMethod = result.trackingMethod
        }

        let targets = VMBench.targets(runs: runs)
        printSummary(runs: runs, workRates: workRates, breakdowns: breakdowns, targets: targets)
        let guest: [String: Any] = [
            "kernel": image.kernel, "initrd": image.initrd, "memoryMiB": VMBench.memoryMiB, "accelerator": "tcg", "vcpus": 1,
            "dirtyTracking": trackingMethod, "secondsPerMeasurement": seconds,
            "hostLoadAverageAtStart": loadAtStart, "hostLoadAverageAtEnd": VMBench.loadAverage(),
        ]
        return ["guest": guest, "runs": runs, "workRate": workRates, "pauseBreakdown": breakdowns, "targets": targets,
                "deviceState": deviceState]
    }

    // MARK: - One guest load

    private struct LoadResult {
        var runs: [[String: Any]] = []
        var workRate: [String: Any] = [:]
        var breakdown: [String: Any] = [:]
        var trackingMethod = ""
    }

    private func runLoad(_ load: Load, image: (kernel: String, initrd: String), preload: String, workspace: String,
                         certificates: String, logger: Logger) throws -> LoadResult {
        let id = "vmbench-\(load.pagesPerSecond)-\(UUID().uuidString.prefix(6).lowercased())"
        let description = VMDescription(
            id: id, memoryBytes: VMBench.memoryMiB << 20, accelerator: .tcg, kernel: image.kernel, initrd: image.initrd,
            commandLine: "console=ttyS0 understudy.dirty_pages_per_sec=\(load.pagesPerSecond) understudy.dirty_mib=\(load.dirtyMiB)",
            runDirectory: "\(workspace)/\(id)")
        let identity = VMIdentity(id: description.id, memorySize: description.memoryBytes)
        let replicaDirectory = "/dev/shm/understudy-vmbench-replica-\(id)"
        defer {
            try? FileManager.default.removeItem(atPath: replicaDirectory)
            try? FileManager.default.removeItem(atPath: description.runDirectory)
        }
        let backup = try BenchBackup(
            configuration: BackupConfiguration(nodeName: "backup", listen: Endpoint(host: "127.0.0.1", port: 0),
                                               tls: TLSConfiguration(directory: certificates, node: "backup", peer: "primary"),
                                               identity: identity, replicaDirectory: replicaDirectory),
            logger: logger)
        defer { backup.stop() }

        let exits = FailureBox()
        let qemu = try QEMUCheckpointSource(description: description, preloadLibrary: preload, tracking: .auto,
                                            logger: logger) { exits.record("\($0)") }
        defer { qemu.shutdown() }
        // Each interval is a new replication session on the same QEMU: it arms tracking again.
        let source = qemu
        var result = LoadResult()
        result.trackingMethod = qemu.trackingMethod.rawValue
        let counter = CounterWatch(path: description.serialLog)
        guard counter.waitForCounter(timeout: .seconds(90)) else {
            throw BenchError("the \(load.name) guest printed no COUNTER within 90 s (serial log \(description.serialLog)); \(exits.value ?? "")")
        }
        Thread.sleep(forTimeInterval: 1)   // let boot-time activity settle
        log("\(load.name): guest \(id) running (pid \(qemu.qemu.pid), tracking \(qemu.trackingMethod))")

        // 1. Work rate: unprotected, protected at the work-rate interval, unprotected again, back to
        // back so that drift of a shared host affects both sides alike.
        let unprotected = try measureRate(counter, qemuPID: qemu.qemu.pid, seconds: seconds) {}
        log(String(format: "  unprotected: counter %.4g/s, guest clock %.3f", unprotected.rate, unprotected.guestClock))
        var protected: CounterRate?
        var unprotectedAfter: CounterRate?
        var rows: [Int: [String: Any]] = [:]
        let order = [VMBench.workRateInterval] + VMBench.intervalsMilliseconds.filter { $0 != VMBench.workRateInterval }
        for interval in order {
            // 2. One session per interval.
            try exits.check()
            let (row, rate) = try session(source: source, backup: backup, counter: counter, qemuPID: qemu.qemu.pid,
                                          interval: interval, certificates: certificates, logger: logger)
            var full = row
            full["load"] = load.name
            full["dirtyPagesPerSecondConfigured"] = load.pagesPerSecond
            rows[interval] = full
            log(String(format: "  %3ld ms: %6.1f ckpt/s  pause p50 %5.2f p99 %5.2f max %6.2f ms  %7.1f pages/ckpt  %6.0f wire B/page  ack p50 %5.2f p99 %6.2f ms  counter %.4g/s, guest clock %.3f",
                       interval, row["checkpointsPerSecond"] as! Double, row["pauseP50Ms"] as! Double, row["pauseP99Ms"] as! Double,
                       row["pauseMaxMs"] as! Double, row["dirtyPagesPerCheckpoint"] as! Double, row["wireBytesPerDirtyPage"] as! Double,
                       row["ackLatencyP50Ms"] as! Double, row["ackLatencyP99Ms"] as! Double, rate.rate, rate.guestClock))
            if interval == VMBench.workRateInterval {
                protected = rate
                try exits.check()
                let after = try measureRate(counter, qemuPID: qemu.qemu.pid, seconds: seconds) {}
                unprotectedAfter = after
                log(String(format: "  unprotected again: counter %.4g/s, guest clock %.3f", after.rate, after.guestClock))
            }
        }
        result.runs = VMBench.intervalsMilliseconds.compactMap { rows[$0] }

        // 3. Where the pause goes.
        try exits.check()
        result.breakdown = try pauseBreakdown(qemu: qemu, description: description)
        result.breakdown["load"] = load.name
        try exits.check()

        let protectedRate = protected!
        let after = unprotectedAfter!
        // The guest's clock stops while the VM is, so the time it loses per checkpoint (against
        // the mean unprotected clock speed) is the pause as the guest saw it: a check on the
        // reported pause, coarse (a COUNTER line is 100 ms of guest time).
        let workRow = rows[VMBench.workRateInterval]!
        let clockLost = (unprotected.guestClock + after.guestClock) / 2 - protectedRate.guestClock
        result.workRate = [
            "guestObservedPauseMeanMs": clockLost / (workRow["checkpointsPerSecond"] as! Double) * 1000,
            "reportedPauseMeanMs": workRow["pauseMeanMs"]!,
            "load": load.name,
            "unprotectedCounterPerSecond": unprotected.rate,
            "unprotectedAfterCounterPerSecond": after.rate,
            "protectedCounterPerSecond": protectedRate.rate,
            "protectedIntervalMs": VMBench.workRateInterval,
            "ratioProtectedToUnprotected": protectedRate.rate / unprotected.rate,
            "ratioProtectedToMeanUnprotected": protectedRate.rate / ((unprotected.rate + after.rate) / 2),
            "guestClockRateUnprotected": unprotected.guestClock,
            "hostLoadAverage": VMBench.loadAverage(),
            "guestClockRateProtected": protectedRate.guestClock,
            "qemuCpuPercentUnprotected": unprotected.qemuCPUPercent,
            "qemuCpuPercentProtected": protectedRate.qemuCPUPercent,
            "benchProcessCpuPercentProtected": protectedRate.selfCPUPercent,
        ]
        return result
    }

    /// One replication session at `interval` for `seconds`, or for `minimumCheckpoints` if that
    /// takes longer, with the counter measured meanwhile.
    func session(source: QEMUCheckpointSource, backup: BenchBackup, counter: CounterWatch, qemuPID: Int32, interval: Int,
                         certificates: String, logger: Logger) throws -> ([String: Any], CounterRate) {
        let primary = PrimaryReplicator(
            source: source,
            configuration: PrimaryConfiguration(nodeName: "primary", backup: backup.endpoint,
                                                tls: TLSConfiguration(directory: certificates, node: "primary", peer: "backup"),
                                                interval: .milliseconds(interval)),
            logger: logger)
        let sessionsBefore = backup.receiver.statistics.sessions
        var stopped = false
        defer {
            if !stopped { primary.stop() }
        }
        try primary.start()   // handshake and initial sync (not part of the measured window)
        let syncStats = primary.statistics

        let stop = FlagBox()
        let loopResult = FailureBox()
        let loopTime = DurationBox()
        let loop = JoinableThread(name: "vmbench-ckpt") {
            let started = ContinuousClock.now
            do { try primary.runCheckpoints(shouldStop: { stop.isSet }) } catch { loopResult.record("\(error)") }
            loopTime.set(ContinuousClock.now - started)
        }
        let rate: CounterRate
        do {
            rate = try measureRate(counter, qemuPID: qemuPID,
                                   seconds: max(seconds, Double(minimumCheckpoints * interval) / 1000)) { try loopResult.check() }
        } catch {
            stop.set()
            loop.join()
            throw error
        }
        stop.set()
        loop.join()
        try loopResult.check()
        let loopSeconds = loopTime.value.seconds
        try primary.drain(timeout: .seconds(30))
        let stats = primary.statistics
        primary.stop()
        stopped = true
        // The backup takes the next session only once this one has ended.
        let deadline = ContinuousClock.now + .seconds(20)
        while backup.receiver.statistics.sessionsEnded < sessionsBefore + 1 && ContinuousClock.now < deadline {
            Thread.sleep(forTimeInterval: 0.005)
        }
        if let error = backup.receiver.statistics.lastSessionError { throw BenchError("backup session ended with: \(error)") }

        let pauses = stats.pauses.map(\.milliseconds).sorted()
        let acks = stats.ackLatencies.map(\.milliseconds).sorted()
        let checkpoints = max(1, stats.checkpointsSent)
        let firstPause = stats.pauses.first?.milliseconds ?? 0
        let laterPauses = stats.pauses.dropFirst().map(\.milliseconds).sorted()
        let row: [String: Any] = [
            "intervalMs": interval,
            "seconds": loopSeconds,
            "checkpoints": stats.checkpointsSent,
            "checkpointsAcknowledged": stats.checkpointsAcknowledged,
            "checkpointsPerSecond": Double(stats.checkpointsSent) / loopSeconds,
            "pauseP50Ms": percentile(pauses, 0.50),
            "pauseP99Ms": percentile(pauses, 0.99),
            "pauseMaxMs": pauses.last ?? 0,
            "pauseMeanMs": pauses.isEmpty ? 0 : pauses.reduce(0, +) / Double(pauses.count),
            "firstPauseMs": firstPause,
            "pauseMaxAfterFirstMs": laterPauses.last ?? 0,
            "pausedFraction": pauses.reduce(0, +) / 1000 / loopSeconds,
            "dirtyPages": stats.dirtyPages,
            "dirtyPagesPerCheckpoint": Double(stats.dirtyPages) / Double(checkpoints),
            "dirtyPagesPerSecond": Double(stats.dirtyPages) / loopSeconds,
            "rawBytes": stats.rawBytes,
            "wireBytes": stats.wireBytes,
            "wireBytesPerCheckpoint": Double(stats.wireBytes) / Double(checkpoints),
            "deviceStateRawBytesPerCheckpoint": Double(stats.deviceStateRawBytes) / Double(checkpoints),
            "deviceStateWireBytesPerCheckpoint": Double(stats.deviceStateWireBytes) / Double(checkpoints),
            "framingBytesPerCheckpoint": Double(stats.framingBytes) / Double(checkpoints),
            // What a checkpoint costs besides its pages and disk writes (the issue's 1 KiB target).
            "beyondPagesBytesPerCheckpoint": Double(stats.deviceStateWireBytes + stats.framingBytes) / Double(checkpoints),
            "wireBytesPerDirtyPage": stats.dirtyPages == 0 ? 0 : Double(stats.wireBytes) / Double(stats.dirtyPages),
            "compressionRatio": stats.wireBytes == 0 ? 0 : Double(stats.rawBytes) / Double(stats.wireBytes),
            "ackLatencyP50Ms": percentile(acks, 0.50),
            "ackLatencyP99Ms": percentile(acks, 0.99),
            "ackLatencyMaxMs": acks.last ?? 0,
            // The first checkpoint after the initial sync waits for the backup to finish applying the sync.
            "ackLatencyP99AfterFirstMs": percentile(stats.ackLatencies.dropFirst().map(\.milliseconds).sorted(), 0.99),
            "pauseP99AfterFirstMs": percentile(laterPauses, 0.99),
            "longestPause": (stats.longestPause?.breakdown.summary ?? [:]).merging(["epoch": Double(stats.longestPause?.epoch ?? 0)]) { $1 },
            "encodings": Dictionary(uniqueKeysWithValues: stats.encodings.map { ("\($0.key)", $0.value) }),
            "syncPages": syncStats.syncPages,
            "syncWireBytes": syncStats.syncWireBytes,
            "syncSeconds": syncStats.syncDuration.seconds,
            "counterPerSecond": rate.rate,
            "guestClockRate": rate.guestClock,
            "qemuCpuPercent": rate.qemuCPUPercent,
            "benchProcessCpuPercent": rate.selfCPUPercent,
            "hostLoadAverage": VMBench.loadAverage(),
        ]
        return (row, rate)
    }

    // MARK: - Pause breakdown

    /// Where the pause goes, with no replication running (one capture every 25 ms, as in the
    /// protected work-rate run), alternating two ways of capturing the same guest:
    /// - `pauseChannel`: `QEMUProcess.saveDeviceState` as `capture` uses it (one QMP save during
    ///   which QEMU stops and resumes the VM; the pages are copied from inside that pause), always
    ///   collecting before QEMU saves the devices (`capture` chooses per checkpoint);
    /// - `stepwise` (the baseline, how captures were done before): QMP stop and save sent together,
    ///   the pages copied once stop returned, then QMP cont.
    /// For both: the guest's pause (QEMU's STOP to RESUME events), the agent's whole exchange, and
    /// the collect-and-copy inside it. Also the QMP round trip of a short command and of the same
    /// command 100 bytes longer: QEMU parses QMP a byte per main-loop turn.
    private func pauseBreakdown(qemu: QEMUCheckpointSource, description: VMDescription) throws -> [String: Any] {
        let qmp = qemu.qemu.qmp
        let pageSize = Int(qemu.identity.pageSize)
        // Pages dirtied since the last session ended are not part of a 25 ms interval.
        _ = try qemu.tracker.collect()
        Thread.sleep(forTimeInterval: 0.025)
        var roundTrip: [String: [Double]] = [:]
        let padding = String(repeating: "x", count: 100)
        // The same command, refused alike ("parameter 'p' is unexpected") after a parse of
        // different length; encoded ahead, as the checkpoint's save is.
        let commands = try [("short", ""), ("padded100Bytes", padding)].map { ($0.0, try QMPClient.Command("query-status", arguments: ["p": $0.1])) }
        for _ in 0..<50 {
            for (name, command) in commands {
                let start = ContinuousClock.now
                _ = try? qmp.execute([command])
                roundTrip[name, default: []].append((ContinuousClock.now - start).milliseconds)
            }
        }
        var phases: [String: [Double]] = [:]
        var pages: [Double] = []
        // Another file than the pause channel's, which would wait for an answer the baseline never gives.
        let stepwiseFile = description.deviceStateFile + "-stepwise"
        defer { unlink(stepwiseFile) }
        var next = ContinuousClock.now
        for round in 0..<breakdownCaptures {
            let now = ContinuousClock.now
            if next > now { Thread.sleep(forTimeInterval: (next - now).seconds) }
            next = max(next + .milliseconds(VMBench.workRateInterval), ContinuousClock.now)
            let stepwise = round % 2 == 1
            var copying = Duration.zero
            let copy: QEMUProcess.WhilePaused = { devicesMaySave in
                let start = ContinuousClock.now
                let written = try qemu.tracker.collect()
                try devicesMaySave()
                let captured = CapturedCheckpoint(copying: written, from: qemu.memory, pageSize: pageSize)
                copying = ContinuousClock.now - start
                pages.append(Double(captured.pageIndices.count))
            }
            let start = ContinuousClock.now
            let pause: Duration?
            if stepwise {
                // At the same priority as the pause channel's captures: only the method differs.
                pause = try qemu.qemu.withPausePriority { try qemu.qemu.saveStepwise(to: stepwiseFile, resume: true, whilePaused: copy) }
            } else {
                pause = try qemu.qemu.saveDeviceState(resume: true, whilePaused: copy).pause
            }
            let exchange = ContinuousClock.now - start
            guard let pause else { throw BenchError("no STOP/RESUME events around a capture") }
            let method = stepwise ? "stepwise" : "pauseChannel"
            for (name, value) in [("pause", pause), ("exchange", exchange), ("collectAndCopy", copying)] {
                phases["\(method).\(name)", default: []].append(value.milliseconds)
            }
        }
        var row: [String: Any] = [
            "captures": breakdownCaptures,
            "intervalMs": VMBench.workRateInterval,
            "dirtyPagesPerCapture": pages.reduce(0, +) / Double(max(1, pages.count)),
            "deviceStateBytes": (try? FileManager.default.attributesOfItem(atPath: description.deviceStateFile)[.size] as? Int) ?? 0,
        ]
        for (name, times) in roundTrip {
            row["qmpRoundTrip.\(name)"] = ["p50Ms": percentile(times.sorted(), 0.5), "p99Ms": percentile(times.sorted(), 0.99)]
        }
        var line = "  pause breakdown (p50/p99 ms):"
        for method in ["pauseChannel", "stepwise"] {
            for name in ["pause", "exchange", "collectAndCopy"] {
                let sorted = phases["\(method).\(name)", default: []].sorted()
                let mean = sorted.reduce(0, +) / Double(max(1, sorted.count))
                row["\(method).\(name)"] = ["p50Ms": percentile(sorted, 0.5), "p99Ms": percentile(sorted, 0.99), "maxMs": sorted.last ?? 0,
                                              "meanMs": mean]
                line += String(format: " %@.%@ %.2f/%.2f", method, name, percentile(sorted, 0.5), percentile(sorted, 0.99))
            }
        }
        let short = percentile(roundTrip["short", default: []].sorted(), 0.5)
        let padded = percentile(roundTrip["padded100Bytes", default: []].sorted(), 0.5)
        row["qmpParseMicrosecondsPerByte"] = (padded - short) * 1000 / Double(padding.utf8.count)
        log(line + String(format: "; %.0f pages; QMP round trip %.2f ms, +100 bytes %.2f ms",
                          row["dirtyPagesPerCapture"] as! Double, short, padded))
        return row
    }

    static func loadAverage() -> String {
        ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "?").split(separator: " ").prefix(3).joined(separator: " ")
    }

    // MARK: - Counter rate

    struct CounterRate {
        /// Counter increase per host second.
        var rate: Double
        /// Guest seconds (COUNTER lines × 100 ms) per host second.
        var guestClock: Double
        var qemuCPUPercent: Double
        var selfCPUPercent: Double
    }

    /// Measures from the first new COUNTER line to the first new one after `seconds`; `check`
    /// runs while waiting (to stop early when the checkpoint loop failed).
    private func measureRate(_ counter: CounterWatch, qemuPID: Int32, seconds: Double, check: () throws -> Void) throws -> CounterRate {
        guard let first = counter.waitForNext(timeout: .seconds(10)) else { throw BenchError("the guest stopped printing COUNTER lines") }
        let qemuCPU0 = cpuSeconds(pid: qemuPID)
        let selfCPU0 = cpuSeconds(pid: getpid())
        let deadline = first.at + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            try check()
            Thread.sleep(forTimeInterval: min(0.1, max(0, (deadline - ContinuousClock.now).seconds)))
        }
        guard let last = counter.waitForNext(timeout: .seconds(10)) else { throw BenchError("the guest stopped printing COUNTER lines") }
        let elapsed = (last.at - first.at).seconds
        return CounterRate(rate: Double(last.value &- first.value) / elapsed,
                           guestClock: Double(last.lines - first.lines) * 0.1 / elapsed,
                           qemuCPUPercent: (cpuSeconds(pid: qemuPID) - qemuCPU0) / elapsed * 100,
                           selfCPUPercent: (cpuSeconds(pid: getpid()) - selfCPU0) / elapsed * 100)
    }

    /// User plus system CPU seconds of a process (0 when it is gone).
    private func cpuSeconds(pid: Int32) -> Double { ProcessCPUTime.seconds(pid: pid) ?? 0 }

    // MARK: - Targets and summary

    static func targets(runs: [[String: Any]]) -> [[String: Any]] {
        var targets: [[String: Any]] = []
        for load in ["idle", "5000 pages/s"] {
            for row in runs where row["load"] as? String == load {
                let p99 = row["pauseP99Ms"] as! Double
                targets.append(["target": "pause p99 <= 3 ms", "load": load, "intervalMs": row["intervalMs"]!,
                                "limitMs": 3.0, "measuredMs": p99, "met": p99 <= 3.0])
            }
        }
        if let row = runs.first(where: { $0["load"] as? String == "idle" && $0["intervalMs"] as? Int == 10 }) {
            let rate = row["checkpointsPerSecond"] as! Double
            // "Sustained": within 2 % of 100/s over the whole run.
            targets.append(["target": "100 checkpoints/s sustained, idle guest, 10 ms interval", "load": "idle", "intervalMs": 10,
                            "required": 100.0, "measured": rate, "met": rate >= 98.0])
        }
        return targets
    }

    private func printSummary(runs: [[String: Any]], workRates: [[String: Any]], breakdowns: [[String: Any]], targets: [[String: Any]]) {
        var text = "\nVM checkpointing (counter guest, TCG, \(VMBench.memoryMiB) MiB, \(Int(seconds)) s per run)\n"
        text += "load            ms  ckpt/s  pause p50   p99    max  pages/ckpt  wire B/page  ack p50   p99\n"
        for row in runs {
            text += pad(row["load"] as! String, 14) + String(format: " %3ld  %6.1f  %8.2f %6.2f %6.2f  %10.1f  %11.0f  %7.2f %6.2f\n",
                           row["intervalMs"] as! Int, row["checkpointsPerSecond"] as! Double,
                           row["pauseP50Ms"] as! Double, row["pauseP99Ms"] as! Double, row["pauseMaxMs"] as! Double,
                           row["dirtyPagesPerCheckpoint"] as! Double, row["wireBytesPerDirtyPage"] as! Double,
                           row["ackLatencyP50Ms"] as! Double, row["ackLatencyP99Ms"] as! Double)
        }
        text += "work rate (counter/s)  unprotected   protected@\(VMBench.workRateInterval)ms  ratio  (unprotected again)\n"
        for row in workRates {
            text += pad(row["load"] as! String, 22) + String(format: " %11.4g  %14.4g  %5.3f  (%.4g; ratio to the mean of both %.3f; guest clock lost %.2f ms per checkpoint, mean pause reported %.2f ms)\n",
                           row["unprotectedCounterPerSecond"] as! Double, row["protectedCounterPerSecond"] as! Double,
                           row["ratioProtectedToUnprotected"] as! Double, row["unprotectedAfterCounterPerSecond"] as! Double,
                           row["ratioProtectedToMeanUnprotected"] as! Double, row["guestObservedPauseMeanMs"] as! Double,
                           row["reportedPauseMeanMs"] as! Double)
        }
        text += "pause p50/p99 ms (pages/capture):    pause channel: pause  exchange  copy |  stepwise: pause  exchange  copy\n"
        for row in breakdowns {
            func p(_ name: String, _ key: String) -> Double { (row[name] as! [String: Any])[key] as! Double }
            text += pad(row["load"] as! String, 14) + String(format: " (%5.0f)", row["dirtyPagesPerCapture"] as! Double)
            for method in ["pauseChannel", "stepwise"] {
                text += String(format: "  %4.2f/%4.2f  %4.2f/%4.2f  %4.2f/%4.2f", p("\(method).pause", "p50Ms"), p("\(method).pause", "p99Ms"),
                               p("\(method).exchange", "p50Ms"), p("\(method).exchange", "p99Ms"),
                               p("\(method).collectAndCopy", "p50Ms"), p("\(method).collectAndCopy", "p99Ms"))
            }
            text += String(format: "  QMP parse %.1f us/byte\n", row["qmpParseMicrosecondsPerByte"] as! Double)
        }
        for target in targets {
            let measured = (target["measuredMs"] ?? target["measured"]) as! Double
            text += String(format: "target %@ (%@, %ld ms): %.2f  %@\n", target["target"] as! String, target["load"] as! String,
                           target["intervalMs"] as! Int, measured, (target["met"] as! Bool) ? "met" : "NOT MET")
        }
        log(text)
    }

    private func pad(_ text: String, _ width: Int) -> String { text.count >= width ? text : text + String(repeating: " ", count: width - text.count) }

    func log(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }

}

// MARK: - Helpers

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A backup receiver serving on its own thread.
final class BenchBackup: @unchecked Sendable {
    let receiver: BackupReceiver
    private let thread: JoinableThread

    init(configuration: BackupConfiguration, logger: Logger) throws {
        let receiver = try BackupReceiver(configuration: configuration, logger: logger)
        self.receiver = receiver
        thread = JoinableThread(name: "vmbench-backup") { receiver.serve() }
    }

    var endpoint: Endpoint { receiver.endpoint }

    func stop() {
        receiver.stop()
        thread.join()
    }
}

/// Follows a serial log and the COUNTER lines in it, reading only what was appended.
final class CounterWatch {
    struct Observation {
        let at: ContinuousClock.Instant
        let value: UInt64
        /// COUNTER lines seen so far.
        let lines: Int
    }

    private let path: String
    private var offset: UInt64 = 0
    private var partial: [UInt8] = []
    private(set) var last: UInt64?
    private(set) var lines = 0

    init(path: String) { self.path = path }

    /// Reads what was appended; true when a new COUNTER line arrived.
    @discardableResult
    func poll() -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        guard (try? handle.seek(toOffset: offset)) != nil, let data = try? handle.readToEnd(), !data.isEmpty else { return false }
        offset += UInt64(data.count)
        partial.append(contentsOf: data)
        var found = false
        while let end = partial.firstIndex(where: { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") }) {
            let line = String(decoding: partial[..<end], as: UTF8.self)
            partial.removeSubrange(...end)
            if line.hasPrefix("COUNTER "), let value = UInt64(line.dropFirst(8)) {
                last = value
                lines += 1
                found = true
            }
        }
        return found
    }

    func waitForCounter(timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            poll()
            if last != nil { return true }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return false
    }

    /// Waits for the next COUNTER line and notes when it was seen (polling every millisecond).
    func waitForNext(timeout: Duration) -> Observation? {
        poll()
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if poll(), let last { return Observation(at: .now, value: last, lines: lines) }
            Thread.sleep(forTimeInterval: 0.001)
        }
        return nil
    }
}

final class FlagBox: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    func set() { lock.lock(); flag = true; lock.unlock() }
    func clear() { lock.lock(); flag = false; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return flag }
}

final class FailureBox: @unchecked Sendable {
    private let lock = NSLock()
    private var message: String?
    func record(_ text: String) { lock.lock(); if message == nil { message = text }; lock.unlock() }
    var value: String? { lock.lock(); defer { lock.unlock() }; return message }
    func check() throws { if let value { throw BenchError(value) } }
}

final class DurationBox: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Duration = .zero
    func set(_ value: Duration) { lock.lock(); stored = value; lock.unlock() }
    var value: Duration { lock.lock(); defer { lock.unlock() }; return stored }
}
