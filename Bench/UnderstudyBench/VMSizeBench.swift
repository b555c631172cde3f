import Foundation
#if canImport(Glibc)
import Glibc
#endif
import UnderstudyAgent
import UnderstudyHarness
import UnderstudySystem
import UnderstudyTransport

/// Checkpoints of big guests (`--vm --memory-sizes 512M,2G,4G,8G`): the idle counter guest under
/// the two `understudy` agents, as an operator runs them, with only its memory size changed.
///
/// Per size: the primary boots the guest alone first, so the sync copies a booted idle guest, as
/// when a backup joins later; then the backup starts (its replica on /dev/shm) and the initial
/// sync runs; then `seconds` of checkpoints at 25 ms. Written: the pause's percentiles and its
/// mean phases from the primary's status, the sync's time and rate, and what the backup process
/// and its replica hold in memory. Across sizes: the pause's slope per GiB, and what it predicts
/// for 64 GiB.
struct VMSizeBench {
    let sizesMiB: [Int]
    /// Seconds of checkpoints after the sync.
    let seconds: Double

    init(sizes: String, quick: Bool) throws {
        sizesMiB = try sizes.split(separator: ",").map { try Self.mebibytes(String($0)) }
        guard !sizesMiB.isEmpty else { throw BenchError("--memory-sizes needs sizes, e.g. 512M,2G,4G,8G") }
        seconds = quick ? 5 : 12
    }

    /// "512M", "4G" or a number of MiB.
    static func mebibytes(_ text: String) throws -> Int {
        let trimmed = text.trimmingCharacters(in: .whitespaces).uppercased()
        let (digits, scale) = trimmed.hasSuffix("G") ? (trimmed.dropLast(), 1024) : trimmed.hasSuffix("M") ? (trimmed.dropLast(), 1) : (Substring(trimmed), 1)
        guard let value = Int(digits), value > 0 else { throw BenchError("not a memory size: \(text) (use e.g. 512M or 4G)") }
        return value * scale
    }

    func run() throws -> [String: Any] {
        let understudy = productsDirectory().appendingPathComponent("understudy").path
        guard FileManager.default.isExecutableFile(atPath: understudy) else {
            throw BenchError("no understudy binary at \(understudy): build it (swift build --product understudy)")
        }
        let workspace = try TemporaryDirectory("vmsizes")
        defer { workspace.remove() }
        _ = try CertificateAuthority.initialize(directory: "\(workspace.path)/certs", nodes: ["primary", "backup"])
        var rows: [[String: Any]] = []
        for size in sizesMiB {
            let row = try measure(memoryMiB: size, understudy: understudy, workspace: workspace.path)
            log(String(format: "%5d MiB: pause p50 %.2f p99 %.2f ms (collect %.2f ms mean), sync %.2f s (%.0f MB/s, %d pages), backup RSS %.0f MB",
                       size, row["pause_ms_p50"] as! Double, row["pause_ms_p99"] as! Double,
                       (row["pause_parts_mean_ms"] as! [String: Double])["collectMs"] ?? 0, row["initial_sync_seconds"] as! Double,
                       row["initial_sync_mbytes_per_second"] as! Double, row["initial_sync_pages"] as! Int, row["backup_rss_mbytes"] as! Double))
            rows.append(row)
        }
        var result: [String: Any] = ["sizes": rows, "guest": "counter guest (busybox initramfs), idle, TCG, 1 vCPU, 25 ms interval",
                                     "secondsOfCheckpoints": seconds]
        if let fit = Self.slope(rows, key: "pause_ms_p50") {
            result["pause_ms_p50_per_gib"] = fit.perGiB
            result["pause_ms_p50_at_64_gib_extrapolated"] = fit.at(64 * 1024)
        }
        if let fit = Self.slope(rows, key: "collect_ms_mean") {
            result["collect_ms_mean_per_gib"] = fit.perGiB
            result["collect_ms_mean_at_64_gib_extrapolated"] = fit.at(64 * 1024)
        }
        return result
    }

    /// A least-squares line through (GiB, value) of the rows.
    static func slope(_ rows: [[String: Any]], key: String) -> (perGiB: Double, at: (Int) -> Double)? {
        let points = rows.compactMap { row -> (Double, Double)? in
            guard let mib = row["memory_mib"] as? Int, let value = row[key] as? Double else { return nil }
            return (Double(mib) / 1024, value)
        }
        guard points.count >= 2 else { return nil }
        let n = Double(points.count)
        let meanX = points.map(\.0).reduce(0, +) / n
        let meanY = points.map(\.1).reduce(0, +) / n
        let spread = points.map { ($0.0 - meanX) * ($0.0 - meanX) }.reduce(0, +)
        guard spread > 0 else { return nil }
        let perGiB = points.map { ($0.0 - meanX) * ($0.1 - meanY) }.reduce(0, +) / spread
        return (perGiB, { mib in meanY + perGiB * (Double(mib) / 1024 - meanX) })
    }

    private func measure(memoryMiB: Int, understudy: String, workspace: String) throws -> [String: Any] {
        let vm = "sz\(memoryMiB)-\(UUID().uuidString.prefix(6).lowercased())"
        let directory = "\(workspace)/\(vm)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: "\(directory)/certs", withDestinationPath: "\(workspace)/certs")
        let replica = "/dev/shm/understudy-vmsizes-\(vm)"
        var processes: [Process] = []
        defer {
            AgentPair.stop(processes, directory: directory)
            try? FileManager.default.removeItem(atPath: replica)
        }
        let configs = try AgentPair.writeConfigs(in: directory, port: LoopbackPorts.free(), vm: vm, guest: TestGuest.image,
                                                 cmdline: "understudy.dirty_pages_per_sec=0", replicaDirectory: replica,
                                                 backupExtra: "[failover]\nautomatic = false\n", memoryMiB: memoryMiB)
        processes.append(try AgentPair.start(understudy, ["primary", "--config", configs.primary, "--log-level", "info"], log: "\(directory)/primary.log"))
        try wait(for: "the guest to boot", directory: directory, processes: processes) {
            TestGuest.lastCounter(in: "\(directory)/run-primary/serial.log") != nil
        }
        Thread.sleep(forTimeInterval: 2)   // boot-time activity settles: the sync copies an idle guest
        let backupStart = ContinuousClock.now
        processes.append(try AgentPair.start(understudy, ["backup", "--config", configs.backup, "--log-level", "info"], log: "\(directory)/backup.log"))
        let control = "\(directory)/run-primary/control.sock"
        try wait(for: "protection", directory: directory, processes: processes) { Self.primaryStatus(control)?.state == .protecting }
        let protectedAfter = (ContinuousClock.now - backupStart).seconds
        Thread.sleep(forTimeInterval: seconds)
        guard let status = Self.primaryStatus(control) else { throw BenchError("the primary does not answer on \(control); see \(directory)") }
        let backup = MemoryUse(pid: processes[1].processIdentifier)
        let primary = MemoryUse(pid: processes[0].processIdentifier)
        let syncSeconds = status.syncSeconds ?? 0
        let syncedBytes = Double((status.syncPages ?? 0) * 4096)
        let parts = status.meanPause ?? [:]
        return [
            "memory_mib": memoryMiB,
            "pause_ms_p50": status.pauseMillisecondsP50 ?? 0,
            "pause_ms_p99": status.pauseMillisecondsP99 ?? 0,
            "pause_ms_max": status.pauseMillisecondsMax ?? 0,
            "pause_parts_mean_ms": parts,
            "collect_ms_mean": parts["collectMs"] ?? 0,
            "dirty_pages_per_checkpoint": status.dirtyPagesPerCheckpoint ?? 0,
            "checkpoints_per_second": status.checkpointsPerSecond ?? 0,
            "initial_sync_seconds": syncSeconds,
            "initial_sync_pages": status.syncPages ?? 0,
            "initial_sync_wire_mbytes": Double(status.syncWireBytes ?? 0) / 1e6,
            // Guest memory the sync covered (all of it: pages never written are known zero) per second.
            "initial_sync_mbytes_per_second": syncSeconds > 0 ? Double(memoryMiB << 20) / 1e6 / syncSeconds : 0,
            "initial_sync_data_mbytes_per_second": syncSeconds > 0 ? syncedBytes / 1e6 / syncSeconds : 0,
            "backup_start_to_protected_seconds": protectedAfter,
            "backup_rss_mbytes": backup.residentMegabytes,
            "backup_rss_anon_mbytes": backup.anonymousMegabytes,
            "backup_rss_shmem_mbytes": backup.sharedMemoryMegabytes,
            "backup_replica_mbytes_on_tmpfs": Self.allocatedMegabytes(under: replica),
            "backup_journal_mbytes": Self.allocatedMegabytes(under: replica, only: "journal"),
            "primary_rss_anon_mbytes": primary.anonymousMegabytes,
        ]
    }

    private func wait(for what: String, directory: String, processes: [Process], until done: () -> Bool) throws {
        let deadline = ContinuousClock.now + .seconds(300)
        while !done() {
            if let exited = processes.first(where: { !$0.isRunning }) {
                throw BenchError("an agent exited (status \(exited.terminationStatus)) while waiting for \(what); see \(directory)")
            }
            guard ContinuousClock.now < deadline else { throw BenchError("no \(what) within 300 s; see \(directory)") }
            Thread.sleep(forTimeInterval: 0.1)
        }
    }

    private static func primaryStatus(_ control: String) -> PrimaryStatus? {
        let reply = try? ControlServer.request("status", path: control)
        return reply.flatMap { try? JSONDecoder().decode(AgentStatus.self, from: $0) }?.primary
    }

    /// Bytes the files under `path` (or only the one named `only`) occupy (st_blocks), in MB: a
    /// tmpfs replica's memory.
    private static func allocatedMegabytes(under path: String, only: String? = nil) -> Double {
        let files = only.map { [$0] } ?? (FileManager.default.enumerator(atPath: path)?.allObjects as? [String]) ?? []
        return files.reduce(0.0) { total, file in
            var info = stat()
            return stat("\(path)/\(file)", &info) == 0 && info.st_mode & S_IFMT == S_IFREG ? total + Double(info.st_blocks) * 512 / 1e6 : total
        }
    }

    private func log(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }
}

/// A process's resident memory from /proc/PID/status: in all, anonymous, and shared memory (a
/// mapped tmpfs file such as the replica counts there).
struct MemoryUse {
    var residentMegabytes = 0.0
    var anonymousMegabytes = 0.0
    var sharedMemoryMegabytes = 0.0

    init(pid: Int32) {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        for line in text.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 2, let kilobytes = Double(fields[1]) else { continue }
            switch fields[0] {
            case "VmRSS:": residentMegabytes = kilobytes * 1024 / 1e6
            case "RssAnon:": anonymousMegabytes = kilobytes * 1024 / 1e6
            case "RssShmem:": sharedMemoryMegabytes = kilobytes * 1024 / 1e6
            default: break
            }
        }
    }
}
