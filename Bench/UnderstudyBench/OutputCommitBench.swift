import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import UnderstudyAgent
import UnderstudyProtocol
import UnderstudyQEMU
import UnderstudyHarness
import UnderstudyNetwork
import UnderstudySystem
import UnderstudyTransport

/// Output commit and disk replication (issue 4) as a client sees them: the counter service of
/// the test guest (`understudy.run=counter-service`, Deploy/guest/counter-service.c) on an ext4
/// disk served over NBD by the agent, its NIC behind the output gate, asked from a client in a
/// private network namespace (PairNetwork).
///
/// One boot per configuration, all in one run, in this order: unprotected (`GuestDevices` role
/// `.unprotected`: the same NBD disk and gate, output passes at once, no checkpoints), protected
/// at 10, 25 and 50 ms on the interval only (role `.protected(buffering: true)`, `PrimaryReplicator`
/// shipping to a `BackupReceiver` with a replica disk on loopback), protected at 25 ms with
/// output-triggered epochs (the default), and unprotected again (a shared host drifts; the
/// baseline pools both unprotected runs).
///
/// Per configuration, on one TCP connection: `requests` "n" requests (increment, append to a file,
/// fsync, reply), each timed from send to reply, with a random pause of 0 to 50 ms between them
/// so that requests arrive at every phase of the checkpoint cycle rather than right after a
/// release. Targets: added latency p50 (protected p50 − unprotected p50) ≤ interval + 3 ms on the
/// interval only, and ≤ 3 ms with output-triggered epochs (`round_trip_added_ms_p50`).
/// Unprotected and at 25 ms also: "w N" requests (write N MiB to a file, fsync, reply), timed
/// from the client: the guest's disk write throughput.
struct OutputCommitBench {
    let requests: Int
    let warmupRequests: Int
    let writeMiB: Int
    let writeRepeats: Int

    init(quick: Bool) {
        requests = quick ? 100 : 300
        warmupRequests = quick ? 10 : 20
        writeMiB = 16
        writeRepeats = quick ? 2 : 4
    }

    static let intervalsMilliseconds = [10, 25, 50]
    static let diskIntervalMilliseconds = 25
    static let targetSlackMilliseconds = 3.0
    /// The added round trip output-triggered epochs aim for, whatever the interval.
    static let triggeredTargetMilliseconds = 3.0
    /// The longest pause between two requests (uniformly random below it).
    static let maxThinkMilliseconds = 50.0
    static let memoryMiB: UInt64 = 128
    static let diskMiB: UInt64 = 64
    static let mac = "52:54:00:77:00:02"

    enum Mode {
        case unprotected
        case protected(intervalMs: Int, outputTriggered: Bool)

        var label: String {
            switch self {
            case .unprotected: "unprotected"
            case .protected(let interval, false): "protected \(interval) ms"
            case .protected(let interval, true): "protected \(interval) ms, output-triggered"
            }
        }
    }

    /// What one boot measured.
    struct GuestRun {
        var label = ""
        var latenciesMs: [Double] = []
        var writeSeconds: [Double] = []
        var latencyWindow: ReplicationWindow?
        var diskWindow: ReplicationWindow?
        var bootSeconds = 0.0
        var gateDroppedFrames: UInt64 = 0
        var gateSendDroppedFrames: UInt64 = 0
        var backupCheckpointsCommitted = 0
        /// The latency run's length, and the frames the gate carried (both ways) and its policy counted meanwhile.
        var latencySeconds = 0.0
        var gateFrames: UInt64 = 0
        var policyFrames: UInt64 = 0
    }

    /// The primary's checkpoints while the client measured.
    struct ReplicationWindow {
        var seconds = 0.0
        var checkpoints = 0
        var pausesMs: [Double] = []
        var ackLatenciesMs: [Double] = []
        var dirtyPages = 0
        var wireBytes = 0
        /// The window's mean pause phase by phase, and what the backup spent committing each checkpoint.
        var meanPause: PauseBreakdown?
        var commitTimings: [CommitTiming] = []

        var json: [String: Any] {
            let pauses = pausesMs.sorted()
            let acks = ackLatenciesMs.sorted()
            func p50(_ phase: KeyPath<CommitTiming, Duration>) -> Double {
                percentile(commitTimings.map { $0[keyPath: phase].seconds * 1000 }.sorted(), 0.5)
            }
            return [
                // Where the round trip goes: the pause (QEMU's phases: stop, deviceSave, resume; the
                // agent's: collect, copy, boundary; the host scheduler's: wake, preempted), then the
                // acknowledgement, of which the backup's seal (with its journal sync) is a part.
                "pause_mean_ms": meanPause?.summary ?? [:],
                "backup_seal_p50_ms": p50(\.seal),
                "backup_journal_sync_p50_ms": p50(\.journalSync),
                "backup_apply_p50_ms": p50(\.apply),
                "seconds": seconds,
                "checkpoints": checkpoints,
                "checkpoints_per_second": seconds > 0 ? Double(checkpoints) / seconds : 0,
                "pause_p50_ms": percentile(pauses, 0.5),
                "pause_p99_ms": percentile(pauses, 0.99),
                "pause_max_ms": pauses.last ?? 0,
                // The share of the window the guest spent stopped for checkpoints.
                "paused_fraction": seconds > 0 ? pausesMs.reduce(0, +) / 1000 / seconds : 0,
                "ack_latency_p50_ms": percentile(acks, 0.5),
                "ack_latency_p99_ms": percentile(acks, 0.99),
                "dirty_pages_per_checkpoint": Double(dirtyPages) / Double(max(1, checkpoints)),
                "wire_bytes_per_second": seconds > 0 ? Double(wireBytes) / seconds : 0,
            ]
        }
    }

    func run(logger: Logger) throws -> [String: Any] {
        let image = TestGuest.image
        guard let preload = PreloadLibrary.locate() else {
            throw BenchError("\(PreloadLibrary.fileName) not found next to the bench: build it too "
                             + "(swift build -c release --product UnderstudyPreload, same --scratch-path)")
        }
        let started = ContinuousClock.now
        let temporary = try TemporaryDirectory("ocbench")
        defer { temporary.remove() }
        let workspace = temporary.path
        let certificates = "\(workspace)/certs"
        _ = try CertificateAuthority.initialize(directory: certificates, nodes: ["primary", "backup"])
        let network = try PairNetwork(tapCount: 1)
        defer { network.remove() }

        log(String(format: "output-commit bench: counter-service guest, TCG, %llu MiB RAM, %llu MiB ext4 disk over NBD, "
                   + "%ld requests per configuration, %ld × %ld MiB writes", OutputCommitBench.memoryMiB, OutputCommitBench.diskMiB,
                   requests, writeRepeats, writeMiB))
        let loadAtStart = VMBench.loadAverage()
        if let oneMinute = Double(loadAtStart.split(separator: " ").first ?? ""), oneMinute > 1.0 {
            log("warning: host load average \(loadAtStart) on \(ProcessInfo.processInfo.activeProcessorCount) cores: latencies will be noisy")
        }

        let plan: [(Mode, Bool)] = [(.unprotected, true)]
            + OutputCommitBench.intervalsMilliseconds.map {
                (.protected(intervalMs: $0, outputTriggered: false), $0 == OutputCommitBench.diskIntervalMilliseconds)
            }
            + [(.protected(intervalMs: OutputCommitBench.diskIntervalMilliseconds, outputTriggered: true), true), (.unprotected, true)]
        var runs: [GuestRun] = []
        for (index, (mode, disk)) in plan.enumerated() {
            let label = index == plan.count - 1 ? "unprotected again" : mode.label
            runs.append(try runGuest(mode, label: label, measureDisk: disk, network: network, image: image, preload: preload,
                                     workspace: workspace, certificates: certificates, logger: logger))
        }

        // Baseline: both unprotected runs pooled.
        let baselineRuns = runs.filter { $0.label.hasPrefix("unprotected") }
        let baseline = baselineRuns.flatMap(\.latenciesMs).sorted()
        let baselineP50 = percentile(baseline, 0.5)
        let baselineP99 = percentile(baseline, 0.99)
        var intervals: [[String: Any]] = []
        let protectedModes = OutputCommitBench.intervalsMilliseconds.map { (interval: $0, triggered: false) }
            + [(OutputCommitBench.diskIntervalMilliseconds, true)]
        var roundTripAdded: Double?
        for (interval, triggered) in protectedModes {
            guard let run = runs.first(where: { $0.label == Mode.protected(intervalMs: interval, outputTriggered: triggered).label }) else { continue }
            let sorted = run.latenciesMs.sorted()
            let added = percentile(sorted, 0.5) - baselineP50
            if triggered { roundTripAdded = added }
            let target = triggered ? OutputCommitBench.triggeredTargetMilliseconds : Double(interval) + OutputCommitBench.targetSlackMilliseconds
            var row: [String: Any] = [
                "interval_ms": interval,
                "output_triggered": triggered,
                "requests": sorted.count,
                "p50_ms": percentile(sorted, 0.5),
                "p99_ms": percentile(sorted, 0.99),
                "max_ms": sorted.last ?? 0,
                "mean_ms": mean(sorted),
                "added_p50_ms": added,
                "added_p99_ms": percentile(sorted, 0.99) - baselineP99,
                "target_added_p50_ms": target,
                "meets_target": added <= target,
                "boot_seconds": run.bootSeconds,
                "gate_dropped_frames": run.gateDroppedFrames + run.gateSendDroppedFrames,
                "backup_checkpoints_committed": run.backupCheckpointsCommitted,
            ]
            if let window = run.latencyWindow { row.merge(window.json) { a, _ in a } }
            intervals.append(row)
        }

        func rate(_ seconds: Double) -> Double { Double(writeMiB << 20) / 1e6 / seconds }
        let unprotectedWrites = baselineRuns.flatMap(\.writeSeconds).map(rate).sorted()
        let protectedRun = runs.first {
            $0.label == Mode.protected(intervalMs: OutputCommitBench.diskIntervalMilliseconds, outputTriggered: false).label
        }
        let triggeredRun = runs.first {
            $0.label == Mode.protected(intervalMs: OutputCommitBench.diskIntervalMilliseconds, outputTriggered: true).label
        }
        let protectedWrites = (protectedRun?.writeSeconds ?? []).map(rate).sorted()
        let triggeredWrites = (triggeredRun?.writeSeconds ?? []).map(rate).sorted()
        let unprotectedRate = median(unprotectedWrites)
        let protectedRate = median(protectedWrites)
        var disk: [String: Any] = [
            "write_mib": writeMiB,
            "writes_per_run": writeRepeats,
            "protected_interval_ms": OutputCommitBench.diskIntervalMilliseconds,
            "unprotected_mb_s": unprotectedRate,
            "protected_mb_s": protectedRate,
            "ratio": unprotectedRate > 0 ? protectedRate / unprotectedRate : 0,
            "output_triggered_mb_s": median(triggeredWrites),
            "output_triggered_ratio": unprotectedRate > 0 ? median(triggeredWrites) / unprotectedRate : 0,
            "unprotected_writes_mb_s": unprotectedWrites,
            "protected_writes_mb_s": protectedWrites,
        ]
        if let window = protectedRun?.diskWindow { disk["protected_replication"] = window.json }

        let baselineJSON: [String: Any] = [
            "p50_ms": baselineP50, "p99_ms": baselineP99, "max_ms": baseline.last ?? 0, "mean_ms": mean(baseline),
            "requests": baseline.count,
            "runs": baselineRuns.map { run -> [String: Any] in
                let sorted = run.latenciesMs.sorted()
                return ["label": run.label, "p50_ms": percentile(sorted, 0.5), "p99_ms": percentile(sorted, 0.99),
                        "requests": sorted.count, "boot_seconds": run.bootSeconds]
            },
        ]
        let guest: [String: Any] = [
            "kernel": image.kernel, "initrd": image.initrd, "memoryMiB": OutputCommitBench.memoryMiB, "diskMiB": OutputCommitBench.diskMiB,
            "accelerator": "tcg", "vcpus": 1, "service": "counter-service", "requestsPerConfiguration": requests,
            "warmupRequests": warmupRequests, "maxThinkMs": OutputCommitBench.maxThinkMilliseconds,
            "order": runs.map(\.label),
            "hostLoadAverageAtStart": loadAtStart, "hostLoadAverageAtEnd": VMBench.loadAverage(),
            "runSeconds": (ContinuousClock.now - started).seconds,
        ]
        let result: [String: Any] = ["guest": guest, "baseline": baselineJSON, "intervals": intervals, "disk": disk,
                                     "round_trip_added_ms_p50": roundTripAdded ?? 0]
        printSummary(result)
        return result
    }

    // MARK: - One boot

    /// - Parameters:
    ///   - policy: the gate's firewall (`--gate-rules`).
    ///   - maxThinkMs: the longest pause between two latency requests; 0: back to back, the guest's full rate.
    func runGuest(_ mode: Mode, label: String, measureDisk: Bool, network: PairNetwork, image: (kernel: String, initrd: String), preload: String,
                  workspace: String, certificates: String, policy: GatePolicy = .allowAll,
                  maxThinkMs: Double = OutputCommitBench.maxThinkMilliseconds, logger: Logger) throws -> GuestRun {
        let tag: String
        var interval: Int?
        var outputTriggered = false
        switch mode {
        case .unprotected: tag = "u"
        case .protected(let ms, let triggered): tag = triggered ? "t\(ms)" : "p\(ms)"; interval = ms; outputTriggered = triggered
        }
        let id = "oc\(tag)-\(UUID().uuidString.prefix(6).lowercased())"
        let diskPath = "\(workspace)/\(id)-disk.img"
        let replicaDiskPath = "\(workspace)/\(id)-replica-disk.img"
        let replicaDirectory = "/dev/shm/understudy-ocbench-replica-\(id)"
        var description = VMDescription(
            id: id, memoryBytes: OutputCommitBench.memoryMiB << 20, accelerator: .tcg, kernel: image.kernel, initrd: image.initrd,
            commandLine: "console=ttyS0 understudy.run=counter-service \(network.guestCommandLine)", diskImages: [diskPath],
            runDirectory: "\(workspace)/\(id)")
        description.diskSizes = [OutputCommitBench.diskMiB << 20]
        defer {
            for path in [description.runDirectory, diskPath, replicaDiskPath, replicaDirectory] { try? FileManager.default.removeItem(atPath: path) }
            for file in (try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? [] where file.hasPrefix("understudy-\(id)-") {
                try? FileManager.default.removeItem(atPath: "/dev/shm/\(file)")
            }
        }
        try HostCommand.run(["sh", "-c", "truncate -s \(OutputCommitBench.diskMiB)M \(diskPath) && mkfs.ext4 -q -F \(diskPath)"])
        var result = GuestRun(label: label)
        let bootStart = ContinuousClock.now

        var backup: BenchBackup?
        if interval != nil {
            try HostCommand.run(["truncate", "-s", "\(OutputCommitBench.diskMiB)M", replicaDiskPath])
            backup = try BenchBackup(
                configuration: BackupConfiguration(nodeName: "backup", listen: Endpoint(host: "127.0.0.1", port: 0),
                                                   tls: TLSConfiguration(directory: certificates, node: "backup", peer: "primary"),
                                                   identity: description.identity, replicaDirectory: replicaDirectory,
                                                   replicaDisks: [replicaDiskPath]),
                logger: logger)
        }
        defer { backup?.stop() }
        let devices = try GuestDevices(vm: description, diskImages: [diskPath], nics: [GuestDevices.NIC(tap: network.taps[0], mac: OutputCommitBench.mac)],
                                       outputBufferBytes: 16 << 20,
                                       role: interval == nil ? .unprotected : .protected(buffering: true), fence: nil, policy: GatePolicyControl(policy), logger: logger)
        defer { devices.stop() }
        let exits = FailureBox()
        var boundary: QEMUCheckpointSource.EpochBoundary?
        if interval != nil { boundary = { @Sendable epoch, checkpoint in devices.seal(epoch: epoch, into: checkpoint) } }
        let source = try QEMUCheckpointSource(
            description: description, preloadLibrary: preload, tracking: .auto, extraArguments: devices.qemuArguments,
            boundary: boundary, beforeStop: { devices.synchronizeDiskBeforeStop() }, logger: logger) { error in exits.record("QEMU exited: \(error)") }
        defer { source.shutdown() }

        // Protected: replicate from boot on, as `understudy primary` does.
        var replicator: PrimaryReplicator?
        var loop: JoinableThread?
        let stop = FlagBox()
        let loopFailure = FailureBox()
        var replicatorStopped = false
        defer {
            stop.set()
            loop?.join()
            if !replicatorStopped { replicator?.stop() }
        }
        if let interval, let backup {
            var configuration = PrimaryConfiguration(nodeName: "primary", backup: backup.endpoint,
                                                     tls: TLSConfiguration(directory: certificates, node: "primary", peer: "backup"),
                                                     interval: .milliseconds(interval), requiredCapabilities: [.deviceState, .diskWrites])
            configuration.schedule = outputTriggered ? .default : .intervalOnly
            configuration.outputWaiting = devices.outputWaiting
            let primary = PrimaryReplicator(source: source, configuration: configuration, disk: devices.diskSet, logger: logger,
                                            onRelease: { devices.release(through: $0) })
            replicator = primary
            try primary.start()
            loop = JoinableThread(name: "ocbench-ckpt") {
                do { try primary.runCheckpoints(shouldStop: { stop.isSet }) } catch { loopFailure.record("checkpoint loop: \(error)") }
            }
        }
        func check() throws {
            try exits.check()
            try loopFailure.check()
        }

        // Boot: the service's readiness line on the serial console, then warm-up requests.
        let deadline = ContinuousClock.now + .seconds(180)
        while true {
            try check()
            let serial = (try? String(contentsOfFile: description.serialLog, encoding: .utf8)) ?? ""
            if serial.contains("SERVICE READY") { break }
            if let failure = serial.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).first(where: { $0.hasPrefix("counter-service: cannot") }) {
                throw BenchError("\(label): \(failure)")
            }
            if ContinuousClock.now > deadline {
                let tail = serial.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).suffix(5).joined(separator: " | ")
                throw BenchError("\(label): no SERVICE READY within 180 s; serial log ends: \(tail)")
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        let warmup = ServiceClient.run(network: network, work: .latency(count: warmupRequests, maxThinkMs: 0, connectTimeout: .seconds(60)))
        if let error = warmup.error { throw BenchError("\(label): warm-up: \(error)") }
        result.bootSeconds = (bootStart.duration(to: .now)).seconds
        try check()

        // Request latency.
        let before = replicator?.statistics
        let backupBefore = backup?.receiver.statistics
        func gateCounts() -> (frames: UInt64, policy: UInt64) {
            guard let statistics = devices.outputStatistics, let policy = devices.policyStatistics else { return (0, 0) }
            // Every guest frame read: held now, released, passed, or dropped for a full buffer; plus those to the guest.
            let fromGuest = UInt64(statistics.buffer.heldFrames) &+ statistics.buffer.releasedFrames &+ statistics.buffer.passedFrames
                &+ statistics.buffer.droppedFrames
            return (fromGuest &+ statistics.framesToGuest,
                    policy.unmatchedFrames &+ policy.rules.reduce(0) { $0 &+ $1.frames })
        }
        let gateBefore = gateCounts()
        let latency = ServiceClient.run(network: network, work: .latency(count: requests, maxThinkMs: maxThinkMs, connectTimeout: .seconds(10)))
        if let error = latency.error { throw BenchError("\(label): latency: \(error)") }
        try check()
        let gateAfter = gateCounts()
        result.latencySeconds = latency.seconds
        result.gateFrames = gateAfter.frames &- gateBefore.frames
        result.policyFrames = gateAfter.policy &- gateBefore.policy
        result.latenciesMs = latency.latenciesMs
        if let before, let after = replicator?.statistics {
            result.latencyWindow = window(from: before, to: after, seconds: latency.seconds)
            if let backupBefore, let backupAfter = backup?.receiver.statistics {
                result.latencyWindow?.commitTimings = Array(backupAfter.commitTimings.dropFirst(backupBefore.commitTimings.count))
            }
        }

        // Disk write throughput.
        if measureDisk {
            let before = replicator?.statistics
            let writes = ServiceClient.run(network: network, work: .writes(mib: writeMiB, count: writeRepeats, connectTimeout: .seconds(10)))
            if let error = writes.error { throw BenchError("\(label): writes: \(error)") }
            try check()
            result.writeSeconds = writes.writeSeconds
            if let before, let after = replicator?.statistics {
                result.diskWindow = window(from: before, to: after, seconds: writes.seconds)
            }
        }
        if let gate = devices.outputStatistics {
            result.gateDroppedFrames = gate.buffer.droppedFrames
            result.gateSendDroppedFrames = gate.sendDroppedFrames
        }

        // End the session cleanly: the backup must have accepted every checkpoint.
        if let primary = replicator, let backup {
            stop.set()
            loop?.join()
            loop = nil
            try loopFailure.check()
            try primary.drain(timeout: .seconds(30))
            primary.stop()
            replicatorStopped = true
            let deadline = ContinuousClock.now + .seconds(20)
            while backup.receiver.statistics.sessionsEnded < 1 && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.005) }
            let stats = backup.receiver.statistics
            if let error = stats.lastSessionError { throw BenchError("\(label): backup session ended with: \(error)") }
            result.backupCheckpointsCommitted = stats.checkpointsCommitted
        }

        let sorted = result.latenciesMs.sorted()
        var line = String(format: "%@: boot %.1f s, latency p50 %.2f p99 %.2f ms (%ld requests)", label, result.bootSeconds,
                          percentile(sorted, 0.5), percentile(sorted, 0.99), sorted.count)
        if let window = result.latencyWindow {
            let pauses = window.pausesMs.sorted()
            line += String(format: "; %.1f ckpt/s, pause p50 %.2f p99 %.2f ms", Double(window.checkpoints) / max(window.seconds, 1e-9),
                           percentile(pauses, 0.5), percentile(pauses, 0.99))
        }
        if !result.writeSeconds.isEmpty {
            line += "; writes " + result.writeSeconds.map { String(format: "%.1f", Double(writeMiB << 20) / 1e6 / $0) }.joined(separator: ", ") + " MB/s"
        }
        log(line)
        return result
    }

    private func window(from before: PrimaryStatistics, to after: PrimaryStatistics, seconds: Double) -> ReplicationWindow {
        // The sample arrays only grow within a run this short (they are trimmed at 20 000).
        func newer(_ samples: [Duration], _ earlier: [Duration]) -> [Double] {
            samples.suffix(max(0, samples.count - earlier.count)).map { $0.seconds * 1000 }
        }
        let paused = after.pausesBrokenDown - before.pausesBrokenDown
        return ReplicationWindow(seconds: seconds, checkpoints: after.checkpointsSent - before.checkpointsSent,
                                 pausesMs: newer(after.pauses, before.pauses), ackLatenciesMs: newer(after.ackLatencies, before.ackLatencies),
                                 dirtyPages: after.dirtyPages - before.dirtyPages, wireBytes: after.wireBytes - before.wireBytes,
                                 meanPause: paused > 0 ? (after.pauseSum - before.pauseSum).mean(of: paused) : nil)
    }

    // MARK: - Summary

    private func printSummary(_ result: [String: Any]) {
        let baseline = result["baseline"] as! [String: Any]
        let disk = result["disk"] as! [String: Any]
        let guest = result["guest"] as! [String: Any]
        var text = String(format: "\nOutput commit (counter-service over the output gate, TCG, %ld requests per configuration)\n", requests)
        text += "configuration           p50 ms   p99 ms   added p50   target  met   ckpt/s  pause p50  p99   paused  ack p50\n"
        text += String(format: "unprotected           %8.2f %8.2f\n", baseline["p50_ms"] as! Double, baseline["p99_ms"] as! Double)
        for row in result["intervals"] as! [[String: Any]] {
            text += String(format: "protected %3ld ms%@ %7.2f %8.2f   %9.2f  %6.1f  %@  %6.1f  %9.2f %5.2f  %5.1f%%  %7.2f\n",
                           row["interval_ms"] as! Int, (row["output_triggered"] as! Bool) ? ", trig" : "      ", row["p50_ms"] as! Double, row["p99_ms"] as! Double, row["added_p50_ms"] as! Double,
                           row["target_added_p50_ms"] as! Double, (row["meets_target"] as! Bool) ? "yes" : "NO ",
                           (row["checkpoints_per_second"] as? Double) ?? 0, (row["pause_p50_ms"] as? Double) ?? 0,
                           (row["pause_p99_ms"] as? Double) ?? 0, ((row["paused_fraction"] as? Double) ?? 0) * 100,
                           (row["ack_latency_p50_ms"] as? Double) ?? 0)
        }
        for run in baseline["runs"] as! [[String: Any]] {
            text += String(format: "  (%@: p50 %.2f p99 %.2f ms)\n", run["label"] as! String, run["p50_ms"] as! Double, run["p99_ms"] as! Double)
        }
        text += String(format: "disk writes (%ld MiB + fsync, median): unprotected %.1f MB/s, protected@%ld ms %.1f MB/s, ratio %.3f; "
                       + "output-triggered %.1f MB/s, ratio %.3f\n",
                       writeMiB, disk["unprotected_mb_s"] as! Double, disk["protected_interval_ms"] as! Int,
                       disk["protected_mb_s"] as! Double, disk["ratio"] as! Double, disk["output_triggered_mb_s"] as! Double,
                       disk["output_triggered_ratio"] as! Double)
        text += String(format: "round trip added p50 with output-triggered epochs: %.2f ms (target ≤ %.0f ms)\n",
                       result["round_trip_added_ms_p50"] as! Double, OutputCommitBench.triggeredTargetMilliseconds)
        text += String(format: "run took %.0f s; host load %@ → %@", guest["runSeconds"] as! Double, guest["hostLoadAverageAtStart"] as! String,
                       guest["hostLoadAverageAtEnd"] as! String)
        log(text)
    }

    /// The middle of sorted values (the mean of the middle two for an even count).
    private func median(_ sorted: [Double]) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }

    private func mean(_ values: [Double]) -> Double { values.isEmpty ? 0 : values.reduce(0, +) / Double(values.count) }


    private func log(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }
}

// MARK: - Client

/// A client of the counter service in the test network's client namespace, on a thread of its
/// own (entering a namespace changes the calling thread), over one TCP connection per `run`.
enum ServiceClient {
    enum Work: Sendable {
        /// `count` "n" requests, each timed, with a random pause below `maxThinkMs` between them.
        case latency(count: Int, maxThinkMs: Double, connectTimeout: Duration)
        /// `count` "w `mib`" requests after one untimed one, each timed.
        case writes(mib: Int, count: Int, connectTimeout: Duration)
    }

    struct Outcome: Sendable {
        var latenciesMs: [Double] = []
        var writeSeconds: [Double] = []
        /// From connecting to the last reply.
        var seconds = 0.0
        var error: String?
    }

    private final class Box: @unchecked Sendable {
        let lock = NSLock()
        var outcome = Outcome()
    }

    static let port: UInt16 = 7000

    static func run(network: PairNetwork, work: Work) -> Outcome {
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            defer { done.signal() }
            var outcome = Outcome()
            do {
                try network.enterClientNamespace()
                try perform(work, address: network.guestAddress, into: &outcome)
            } catch {
                outcome.error = "\(error)"
            }
            box.lock.lock()
            box.outcome = outcome
            box.lock.unlock()
        }
        thread.name = "ocbench-client"
        thread.start()
        done.wait()
        box.lock.lock()
        defer { box.lock.unlock() }
        return box.outcome
    }

    private static func perform(_ work: Work, address: String, into outcome: inout Outcome) throws {
        let connectTimeout: Duration
        switch work {
        case .latency(_, _, let timeout), .writes(_, _, let timeout): connectTimeout = timeout
        }
        let fd = try connect(address: address, timeout: connectTimeout)
        defer { close(fd) }
        let start = ContinuousClock.now
        defer { outcome.seconds = (ContinuousClock.now - start).seconds }
        switch work {
        case .latency(let count, let maxThinkMs, _):
            var previous: UInt64?
            for _ in 0..<count {
                if maxThinkMs > 0 { Thread.sleep(forTimeInterval: Double.random(in: 0..<maxThinkMs) / 1000) }
                let sent = ContinuousClock.now
                let reply = try CounterClient.exchange(fd, "n")
                outcome.latenciesMs.append((ContinuousClock.now - sent).seconds * 1000)
                guard let value = UInt64(reply) else { throw BenchError("unexpected reply \"\(reply)\" to n") }
                if let previous, value != previous + 1 { throw BenchError("counter went from \(previous) to \(value)") }
                previous = value
            }
        case .writes(let mib, let count, _):
            for round in 0...count {
                let sent = ContinuousClock.now
                let reply = try CounterClient.exchange(fd, "w \(mib)")
                let seconds = (ContinuousClock.now - sent).seconds
                guard reply == "W \(mib)" else { throw BenchError("unexpected reply \"\(reply)\" to w \(mib)") }
                if round > 0 { outcome.writeSeconds.append(seconds) }
            }
        }
    }

    /// Connects to the service, retrying while it is not listening yet.
    private static func connect(address: String, timeout: Duration) throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let fd = CounterClient.openConnection(to: address, port: port) { return fd }
            if ContinuousClock.now > deadline {
                throw BenchError("cannot connect to \(address):\(port): \(String(cString: strerror(errno)))")
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
    }
}
