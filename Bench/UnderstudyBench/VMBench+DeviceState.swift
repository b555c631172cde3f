import Foundation
import Logging
import UnderstudyAgent
import UnderstudyHarness
import UnderstudyProtocol
import UnderstudyQEMU
import UnderstudySystem
import UnderstudyTransport

extension VMBench {
    /// What device state costs per checkpoint before and after device-state-delta, on the idle
    /// test guest with 1 and 2 vCPUs: on each guest, one session at the work-rate interval to a
    /// backup without the capability (the state goes whole and uncompressed, as before it), then
    /// one to a backup with it, back to back. Also the framing per checkpoint (headers, BEGIN and
    /// END with the digest), which with the device state is what a checkpoint costs beyond its pages.
    func deviceStateComparison(image: (kernel: String, initrd: String), preload: String, workspace: String,
                               certificates: String, logger: Logger) throws -> [[String: Any]] {
        var rows: [[String: Any]] = []
        for vcpus in [1, 2] {
            let id = "vmbench-ds\(vcpus)-\(UUID().uuidString.prefix(6).lowercased())"
            let description = VMDescription(
                id: id, memoryBytes: VMBench.memoryMiB << 20, vcpus: vcpus, accelerator: .tcg, kernel: image.kernel, initrd: image.initrd,
                commandLine: "console=ttyS0 understudy.dirty_pages_per_sec=0", runDirectory: "\(workspace)/\(id)")
            let identity = VMIdentity(id: description.id, memorySize: description.memoryBytes)
            let forms: [(name: String, capabilities: Capabilities)] = [
                ("whole", Capabilities.supported.subtracting(.deviceStateDelta)), ("delta", .supported),
            ]
            let replicas = forms.map { "/dev/shm/understudy-vmbench-replica-\(id)-\($0.name)" }
            defer {
                for replica in replicas { try? FileManager.default.removeItem(atPath: replica) }
                try? FileManager.default.removeItem(atPath: description.runDirectory)
            }
            let backups = try zip(forms, replicas).map { form, replica in
                try BenchBackup(
                    configuration: BackupConfiguration(nodeName: "backup", listen: Endpoint(host: "127.0.0.1", port: 0),
                                                       tls: TLSConfiguration(directory: certificates, node: "backup", peer: "primary"),
                                                       identity: identity, replicaDirectory: replica, capabilities: form.capabilities),
                    logger: logger)
            }
            defer { for backup in backups { backup.stop() } }
            let exits = FailureBox()
            let qemu = try QEMUCheckpointSource(description: description, preloadLibrary: preload, tracking: .auto,
                                                logger: logger) { exits.record("\($0)") }
            defer { qemu.shutdown() }
            let counter = CounterWatch(path: description.serialLog)
            guard counter.waitForCounter(timeout: .seconds(90)) else {
                throw BenchError("the \(vcpus)-vCPU guest printed no COUNTER within 90 s (serial log \(description.serialLog)); \(exits.value ?? "")")
            }
            Thread.sleep(forTimeInterval: 1)
            var row: [String: Any] = ["vcpus": vcpus, "intervalMs": VMBench.workRateInterval, "load": "idle"]
            for (form, backup) in zip(forms, backups) {
                try exits.check()
                let (session, _) = try session(source: qemu, backup: backup, counter: counter, qemuPID: qemu.qemu.pid,
                                               interval: VMBench.workRateInterval, certificates: certificates, logger: logger)
                row[form.name] = session.filter { key, _ in
                    ["checkpoints", "checkpointsPerSecond", "dirtyPagesPerCheckpoint", "wireBytesPerCheckpoint",
                     "deviceStateRawBytesPerCheckpoint", "deviceStateWireBytesPerCheckpoint", "framingBytesPerCheckpoint",
                     "beyondPagesBytesPerCheckpoint"].contains(key)
                }
            }
            let whole = row["whole"] as! [String: Any]
            let delta = row["delta"] as! [String: Any]
            let wholeWire = whole["deviceStateWireBytesPerCheckpoint"] as! Double
            let deltaWire = delta["deviceStateWireBytesPerCheckpoint"] as! Double
            row["deviceStateWireRatioDeltaToWhole"] = deltaWire / wholeWire
            row["beyondPagesAtMost1KiB"] = (delta["beyondPagesBytesPerCheckpoint"] as! Double) <= 1024
            log(String(format: "device state, %ld vCPU idle, %ld ms: %.0f B raw; on the wire %.0f B whole → %.0f B delta (%.3f); framing %.0f B; beyond pages %.0f → %.0f B per checkpoint",
                       vcpus, VMBench.workRateInterval, delta["deviceStateRawBytesPerCheckpoint"] as! Double, wholeWire, deltaWire,
                       deltaWire / wholeWire, delta["framingBytesPerCheckpoint"] as! Double,
                       whole["beyondPagesBytesPerCheckpoint"] as! Double, delta["beyondPagesBytesPerCheckpoint"] as! Double))
            rows.append(row)
        }
        return rows
    }
}
