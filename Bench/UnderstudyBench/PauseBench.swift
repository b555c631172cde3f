import Foundation
import Logging
import UnderstudyAgent
import UnderstudyHarness
import UnderstudyProtocol
import UnderstudyQEMU
import UnderstudySystem

/// Checkpoint pauses under the loads that make them long, on a 1 GiB counter guest (TCG): no
/// replication runs (the pause is the capture's own), one capture every 25 ms as a 25 ms interval
/// would take them. Each load runs on a freshly started guest twice: first `baseline` (as captures
/// were before: the whole dirty set copied inside the pause, and the disk's writes since the
/// guest's last flush synced by QEMU's stop), then `bounded` (pre-copy of large dirty sets,
/// `QEMUCheckpointSource.defaultPreCopy`, holding a guest too fast for it in short slices, and the
/// disk synced just before the stop,
/// `GuestDevices.synchronizeDiskBeforeStop`). It reports pause p50/p99/max, the longest pause's
/// breakdown and each phase's p99, the longest hold and the longest stall (pause or hold), the
/// share of time the guest was stopped (what bounding costs it), the bench's anonymous memory at
/// the end of each run (what staging keeps mapped), and the bounded/baseline ratios.
/// Loads that start before the captures get a warm-up first, reported apart (`warmUp`).
///
/// Loads: `boot` (captures from QEMU's start: kernel, initramfs and first touch of memory),
/// `dirty` (the counter dirtying a 768 MiB buffer as fast as TCG lets it), and `page-cache fill`
/// (the guest writes and reads 256 MiB of its disk through its page cache; the disk is served by
/// the agent's NBD server as on a protected node, so QEMU's stop drains and flushes it).
struct PauseBench {
    let seconds: Double
    let warmUpSeconds: Double
    static let memoryMiB: UInt64 = 1024
    static let intervalMilliseconds = 25

    init(quick: Bool) { (seconds, warmUpSeconds) = quick ? (4, 1) : (10, 3) }

    struct Load {
        let name: String
        let commandLine: String
        let disk: Bool
        /// Captures start as soon as QEMU runs, not once the guest's program prints.
        let fromStart: Bool
    }

    static let loads = [
        Load(name: "boot", commandLine: "understudy.dirty_pages_per_sec=0", disk: false, fromStart: true),
        Load(name: "dirty", commandLine: "understudy.dirty_mib=768 understudy.dirty_pages_per_sec=1000000", disk: false, fromStart: false),
        Load(name: "page-cache fill", commandLine: "understudy.dirty_pages_per_sec=0 understudy.disk_fill_mib=256", disk: true,
             fromStart: false),
    ]

    func run(logger: Logger) throws -> [String: Any] {
        let image = TestGuest.image
        guard let preload = PreloadLibrary.locate() else { throw BenchError("\(PreloadLibrary.fileName) not found next to the bench") }
        let temporary = try TemporaryDirectory("pausebench")
        defer { temporary.remove() }
        var rows: [[String: Any]] = []
        var comparisons: [[String: Any]] = []
        log(String(format: "pause bench: counter guest, TCG, %llu MiB, %.0f s per load and mode, load average %@", PauseBench.memoryMiB,
                   seconds, VMBench.loadAverage()))
        for load in PauseBench.loads {
            var byMode: [String: [String: Any]] = [:]
            for (mode, bounded) in [("baseline", false), ("bounded", true)] {
                var row = try measure(load, bounded: bounded, image: image, preload: preload, workspace: temporary.path, logger: logger)
                row["load"] = load.name
                row["mode"] = mode
                byMode[mode] = row
                rows.append(row)
                log(String(format: "  %-16@ %-10@ %4ld captures  pause p50 %6.2f  p99 %7.2f  max %7.2f ms  hold max %6.2f ms (%ld)  stopped %4.1f%%  pages p50 %6.0f max %7.0f  anonymous %.0f MB  warm-up: %ld captures, pause max %.2f ms (%@)  longest: %@",
                           load.name, mode, row["captures"] as! Int, row["pauseP50Ms"] as! Double, row["pauseP99Ms"] as! Double,
                           row["pauseMaxMs"] as! Double, row["longestHoldMs"] as! Double, row["holds"] as! Int,
                           100 * (row["guestStoppedShare"] as! Double), row["dirtyPagesP50"] as! Double, row["dirtyPagesMax"] as! Double,
                           row["agentAnonymousMegabytesAtEnd"] as! Double,
                           (row["warmUp"] as! [String: Any])["captures"] as! Int, (row["warmUp"] as! [String: Any])["pauseMaxMs"] as! Double,
                           PauseBench.describe((row["warmUp"] as! [String: Any])["longestPause"] as! [String: Double]),
                           PauseBench.describe(row["longestPause"] as! [String: Double])))
            }
            let baseline = byMode["baseline"]!, bounded = byMode["bounded"]!
            func ratio(_ key: String) -> Double { (bounded[key] as! Double) / max(1e-9, baseline[key] as! Double) }
            comparisons.append(["load": load.name, "pauseP99RatioBoundedToBaseline": ratio("pauseP99Ms"),
                                "stallMaxRatioBoundedToBaseline": ratio("stallMaxMs"),
                                "guestStoppedShareRatioBoundedToBaseline": ratio("guestStoppedShare"),
                                "pauseMaxRatioBoundedToBaseline": ratio("pauseMaxMs"), "pauseP50RatioBoundedToBaseline": ratio("pauseP50Ms")])
        }
        return ["guest": ["memoryMiB": PauseBench.memoryMiB, "accelerator": "tcg", "intervalMs": PauseBench.intervalMilliseconds,
                          "secondsPerLoadAndMode": seconds, "hostLoadAverageAtEnd": VMBench.loadAverage()],
                "runs": rows, "comparisons": comparisons]
    }

    private func measure(_ load: Load, bounded: Bool, image: (kernel: String, initrd: String), preload: String,
                         workspace: String, logger: Logger) throws -> [String: Any] {
        let id = "pb\(UUID().uuidString.prefix(6).lowercased())"
        let description = VMDescription(id: id, memoryBytes: PauseBench.memoryMiB << 20, accelerator: .tcg, kernel: image.kernel,
                                        initrd: image.initrd, commandLine: "console=ttyS0 \(load.commandLine)",
                                        runDirectory: "\(workspace)/\(id)")
        defer { try? FileManager.default.removeItem(atPath: description.runDirectory) }
        var devices: GuestDevices?
        if load.disk {
            let disk = "\(workspace)/\(id)-disk.img"
            guard FileManager.default.createFile(atPath: disk, contents: nil), truncate(disk, 512 << 20) == 0 else {
                throw BenchError("cannot create the disk image \(disk)")
            }
            devices = try GuestDevices(vm: description, diskImages: [disk], nics: [], outputBufferBytes: 1 << 20,
                                       role: .protected(buffering: false), fence: nil, policy: GatePolicyControl(.allowAll), logger: logger)
        }
        defer {
            devices?.stop()
            unlink("\(workspace)/\(id)-disk.img")
        }
        let exits = FailureBox()
        var boundary: QEMUCheckpointSource.EpochBoundary?
        var beforeStop: (@Sendable () -> Void)?
        // Bounded: every other capture skips the disk sync before the stop, so that its effect is
        // measured against the same load at the same moments of a noisy host.
        let syncing = FlagBox()
        if let devices {
            boundary = { epoch, checkpoint in devices.seal(epoch: epoch, into: checkpoint) }
            if bounded { beforeStop = { if syncing.isSet { devices.synchronizeDiskBeforeStop() } } }
        }
        let source = try QEMUCheckpointSource(description: description, preloadLibrary: preload, tracking: .pagemap,
                                              extraArguments: devices?.qemuArguments ?? [], boundary: boundary, beforeStop: beforeStop,
                                              preCopy: bounded ? QEMUCheckpointSource.defaultPreCopy : nil,
                                              logger: logger) { exits.record("\($0)") }
        defer { source.shutdown() }
        if !load.fromStart {
            guard TestGuest.waitForCounter(in: description.serialLog, timeout: .seconds(120)) != nil else {
                throw BenchError("\(load.name): no COUNTER within 120 s (serial log \(description.serialLog)); \(exits.value ?? "")")
            }
            Thread.sleep(forTimeInterval: 1)
        }
        try source.startTracking()
        var pauses: [Double] = []
        var pages: [Double] = []
        var phases: [String: [Double]] = [:]
        var longest = PauseBreakdown()
        var longestFlush = Duration.zero
        var (longestHold, holds, heldRounds) = (0.0, 0, 0)
        var stops: [String: [Double]] = [:]
        var epoch: UInt64 = 0
        // A load that starts before the captures (all but boot) first runs `warmUpSeconds` of
        // captures (those that began within it) reported apart: the first large dirty sets meet a
        // staging pool that has never held that much, and a new buffer faults in at about 11 µs a
        // page here (a hypervisor backing fresh memory), once per agent.
        let warmUpEnd = ContinuousClock.now + .milliseconds(load.fromStart ? 0 : Int64(warmUpSeconds * 1000))
        var warmUp = (captures: 0, pauseMax: 0.0, holdMax: 0.0, holds: 0)
        var warmUpLongest = PauseBreakdown()
        var began = ContinuousClock.now
        var (stoppedFor, measuring) = (Duration.zero, load.fromStart)
        let end = warmUpEnd + .milliseconds(Int64(seconds * 1000))
        var next = ContinuousClock.now
        while ContinuousClock.now < end {
            try exits.check()
            let now = ContinuousClock.now
            if next > now { Thread.sleep(forTimeInterval: (next - now).seconds) }
            epoch += 1
            let warming = ContinuousClock.now < warmUpEnd
            let synced = epoch % 2 == 0
            if synced { syncing.set() } else { syncing.clear() }
            let flushedBefore = devices?.disks.first?.statistics.flushTime ?? .zero
            let breakdown = try source.capture(epoch: epoch, resume: true).pauseBreakdown
            if warming {
                warmUp = (warmUp.captures + 1, max(warmUp.pauseMax, breakdown.total.milliseconds),
                          max(warmUp.holdMax, breakdown.longestHold.milliseconds), warmUp.holds + breakdown.holds)
                if breakdown.total > warmUpLongest.total { warmUpLongest = breakdown }
                next = max(next + .milliseconds(PauseBench.intervalMilliseconds), ContinuousClock.now)
                continue
            }
            if !measuring { (measuring, began) = (true, ContinuousClock.now) }
            stoppedFor += breakdown.total + breakdown.held
            // The disk server's FLUSH time during the capture: QEMU's stop's flush, part of `stop`.
            let flush = (devices?.disks.first?.statistics.flushTime ?? .zero) - flushedBefore
            phases["stopFlushMs", default: []].append(flush.milliseconds)
            if beforeStop != nil { stops[synced ? "withDiskSyncBeforeStop" : "withoutDiskSyncBeforeStop", default: []].append(breakdown.stop.milliseconds) }
            if breakdown.total > longest.total { longestFlush = flush }
            pauses.append(breakdown.total.milliseconds)
            pages.append(Double(breakdown.pages + breakdown.preCopiedPages))
            longestHold = max(longestHold, breakdown.longestHold.milliseconds)
            (holds, heldRounds) = (holds + breakdown.holds, heldRounds + breakdown.heldRounds)
            for (name, value) in breakdown.summary where name.hasSuffix("Ms") { phases[name, default: []].append(value) }
            if breakdown.total > longest.total { longest = breakdown }
            next = max(next + .milliseconds(PauseBench.intervalMilliseconds), ContinuousClock.now)
        }
        let measured = ContinuousClock.now - began
        pauses.sort()
        pages.sort()
        return [
            "captures": pauses.count,
            "pauseP50Ms": percentile(pauses, 0.5), "pauseP99Ms": percentile(pauses, 0.99), "pauseMaxMs": pauses.last ?? 0,
            "dirtyPagesP50": percentile(pages, 0.5), "dirtyPagesMax": pages.last ?? 0,
            // Holds stall the guest too: the longest stall is the longer of pause and hold, and the
            // share of time the guest was stopped (pauses and holds) is what bounding costs it.
            "longestHoldMs": longestHold, "stallMaxMs": max(pauses.last ?? 0, longestHold), "holds": holds, "heldRounds": heldRounds,
            "guestStoppedShare": stoppedFor.seconds / max(1e-9, measured.seconds), "measuredSeconds": measured.seconds,
            "warmUp": ["seconds": load.fromStart ? 0 : warmUpSeconds, "captures": warmUp.captures, "pauseMaxMs": warmUp.pauseMax,
                       "longestHoldMs": warmUp.holdMax, "holds": warmUp.holds, "longestPause": warmUpLongest.summary],
            "longestPause": longest.summary.merging(["stopFlushMs": longestFlush.milliseconds]) { $1 },
            "phaseP99Ms": phases.mapValues { percentile($0.sorted(), 0.99) },
            "hostLoadAverage": VMBench.loadAverage(),
            // What staging keeps mapped after the load (the bench's own anonymous memory, with the
            // source still running): the staging pool, shared by the bench's runs, and this
            // source's pre-copy slots.
            "agentAnonymousMegabytesAtEnd": MemoryUse(pid: getpid()).anonymousMegabytes,
            "stopMsByDiskSync": stops.mapValues { times in
                let sorted = times.sorted()
                return ["p50": percentile(sorted, 0.5), "p99": percentile(sorted, 0.99), "max": sorted.last ?? 0]
            },
        ]
    }

    static func describe(_ phases: [String: Double]) -> String {
        ["stop", "wake", "collect", "copy", "boundary", "deviceSave", "resume", "preempted"]
            .map { "\($0) " + String(format: "%.2f", phases["\($0)Ms"] ?? 0) }.joined(separator: ", ")
            + String(format: " (%.0f pages, %.0f pre-copied)", phases["pages"] ?? 0, phases["preCopiedPages"] ?? 0)
    }

    private func log(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }
}
