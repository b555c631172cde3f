import CUnderstudyShims
import Foundation
import Logging
import Synchronization
import UnderstudyDisk
import UnderstudyQEMU
import UnderstudyReplica
import UnderstudyTransport

/// What a failover drill found (`understudy drill --json` prints it with snake_case keys).
public struct DrillReport: Sendable, Codable {
    /// The probe succeeded before the timeout.
    public var ok: Bool
    /// Why the drill failed, or what passed, in a sentence.
    public var message: String
    public var vm: String
    public var probe: String
    /// The committed epoch the clone started from.
    public var epoch: UInt64
    /// How old the recovered state was when it was copied (see `ReplicaSnapshot.committedAt`).
    public var stateAgeMs: Double
    /// How long the copy kept the replica from applying checkpoints.
    public var replicaPausedMs: Double
    /// "backup agent" (the running agent copied its replica) or "replica directory" (no agent ran).
    public var snapshotFrom: String
    /// How the disk was frozen ("reflink" or "sparse"); nil without a disk.
    public var diskCopy: String?
    /// From starting the clone's QEMU to its guest running.
    public var timeToRunningMs: Double?
    /// From starting the clone's QEMU to the probe's success: the recovery time of a failover.
    public var recoveryMs: Double?
    /// The drill's network namespace, removed with everything else when the drill ended.
    public var sandbox: String
    /// Frames the clone sent into the sandbox, and frames it received from there.
    public var sandboxFramesFromClone: UInt64
    public var sandboxFramesToClone: UInt64
}

/// A failover rehearsal on the backup: a clone of the VM starts from the replica's last committed
/// checkpoint in a sandbox, a health probe decides whether it recovered, and the clone is destroyed.
///
/// The replica is only read, for as long as copying it takes (`ReplicaSnapshot`): through the
/// running backup agent's `snapshot` control command when it answers, from the replica directory
/// otherwise. The clone never writes what it was copied from: its RAM is the memory copy, its
/// disk a qcow2 overlay on the frozen disk copy. Its NIC (the same MAC and virtio transport as the
/// protected VM, so that the device state loads) reaches only a network namespace of the drill's
/// own, through an unprotected output gate and a TAP moved into that namespace: whatever the
/// clone sends cannot reach the real network, and the primary and its protection carry on.
public enum Drill {
    /// Runs one drill; cleans up everything it made (QEMU, namespace, TAP, copies, run directory)
    /// before returning or throwing. `stop` ends it early (SIGINT); it is also triggered when the
    /// clone's QEMU exits. Throws when the drill cannot run; a probe that fails is a report with
    /// `ok` false.
    public static func run(configuration: AgentConfiguration, probe: DrillProbe, timeout: Duration, stop: StopSignal,
                           logger: Logger) throws -> DrillReport {
        if case .tcp = probe {
            guard configuration.tap != nil else {
                throw DrillError("a tcp probe needs the guest's NIC, and \(configuration.source) has no network.tap: use a serial probe")
            }
            guard configuration.drill.sandboxAddress != nil else {
                throw DrillError("\(configuration.source): drill.sandbox_address: missing: a tcp probe needs an address in the guest's "
                                 + "subnet for the drill's side of the sandbox, e.g. \"10.77.0.1/24\"")
            }
        }
        let tag = String(format: "%06x", UInt32.random(in: 0...0xff_ffff))
        let directory = "/dev/shm/understudy-\(configuration.vm.id)-drill-\(tag)"
        let (snapshot, snapshotFrom) = try takeSnapshot(configuration: configuration, into: directory, logger: logger)
        defer { snapshot.remove() }
        logger.notice("replica copied for the drill", metadata: [
            "epoch": "\(snapshot.epoch)", "from": "\(snapshotFrom)", "replica-paused-ms": "\(String(format: "%.1f", snapshot.pausedMilliseconds))",
        ])

        var vm = configuration.vm
        vm.runDirectory = "\(configuration.vm.runDirectory)-drill-\(tag)"
        defer { try? FileManager.default.removeItem(atPath: vm.runDirectory) }
        let sandbox = try DrillSandbox(tag: tag, vm: vm, nic: configuration.tap != nil, mac: configuration.mac,
                                       address: configuration.drill.sandboxAddress, outputBufferBytes: configuration.outputBufferBytes,
                                       logger: logger)
        defer { sandbox.remove() }
        // Disk before NIC, as `GuestDevices` orders them: QEMU assigns PCI slots in order, and the
        // device state names each device by its slot.
        var arguments: [String] = []
        if let frozen = snapshot.diskPath {
            let overlay = "\(directory)/overlay.qcow2"
            try HostCommand.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", frozen, overlay])
            arguments += VirtioDisk.overlayArguments(overlay: overlay, deviceOptions: vm.virtio.deviceOptions)
        }
        arguments += sandbox.qemuArguments

        let started = ContinuousClock.now
        let deadline = started + timeout
        // No preload library and comparison tracking: the clone is never checkpointed, and this
        // tracker costs nothing until armed.
        let clone: QEMUCheckpointSource
        do {
            clone = try QEMUCheckpointSource(description: vm, start: .restore(ramFile: snapshot.memoryPath, deviceState: snapshot.deviceState()),
                                             preloadLibrary: nil, tracking: .compare, extraArguments: arguments, logger: logger) { error in
                stop.trigger(.qemuExited(error))
            }
        } catch {
            // The run directory, with QEMU's log, is about to go: keep what QEMU said.
            let log = (try? String(contentsOfFile: vm.qemuLog, encoding: .utf8)) ?? ""
            throw DrillError("the clone did not start: \(error); QEMU: \(log.split(separator: "\n").suffix(5).joined(separator: " | "))")
        }
        defer { clone.shutdown() }
        let running = ContinuousClock.now - started
        logger.notice("clone running", metadata: ["epoch": "\(snapshot.epoch)", "ms": "\(running.wholeMilliseconds)"])

        let failure = sandbox.waitForProbe(probe, serialLog: vm.serialLog, deadline: deadline, timeout: timeout, stop: stop)
        let recovery = ContinuousClock.now - started
        let statistics = sandbox.devices.gate?.statistics
        var report = DrillReport(ok: failure == nil, message: "", vm: vm.id, probe: "\(probe)", epoch: snapshot.epoch,
                                 stateAgeMs: snapshot.stateAgeMilliseconds, replicaPausedMs: snapshot.pausedMilliseconds,
                                 snapshotFrom: snapshotFrom, diskCopy: snapshot.diskCopy?.rawValue, timeToRunningMs: running.seconds * 1000,
                                 recoveryMs: failure == nil ? recovery.seconds * 1000 : nil, sandbox: sandbox.namespace,
                                 sandboxFramesFromClone: statistics?.sentFrames ?? 0, sandboxFramesToClone: statistics?.framesToGuest ?? 0)
        report.message = failure ?? "the clone from checkpoint \(snapshot.epoch) answered \(probe) \(recovery.wholeMilliseconds) ms after it started"
        return report
    }

    /// Asks the backup agent for a snapshot; when none answers, opens the replica here (which
    /// takes its lock, so no agent can start on it meanwhile) and copies it.
    private static func takeSnapshot(configuration: AgentConfiguration, into directory: String,
                                     logger: Logger) throws -> (ReplicaSnapshot, String) {
        let reply: Data
        do {
            reply = try ControlServer.request("snapshot \(directory)", path: configuration.controlSocket)
        } catch {
            guard let replicaDirectory = configuration.replicaDirectory else {
                throw DrillError("\(configuration.source): backup.replica_dir: missing: a drill starts from the replica")
            }
            logger.info("no backup agent answers; copying the replica directory", metadata: ["control": "\(configuration.controlSocket)"])
            let store = try ReplicaStore(directory: replicaDirectory, identity: configuration.identity, diskPath: configuration.vm.diskImage)
            return (try ReplicaSnapshot.take(of: store, into: directory), "replica directory")
        }
        if let snapshot = try? JSONDecoder().decode(ReplicaSnapshot.self, from: reply) { return (snapshot, "backup agent") }
        let refusal = (try? JSONDecoder().decode(ControlReply.self, from: reply))?.message ?? String(decoding: reply, as: UTF8.self)
        throw DrillError("the backup agent did not copy the replica: \(refusal)")
    }
}

/// The clone's network: a namespace of the drill's own whose only interface is the TAP behind the
/// clone's NIC. The TAP is created (by the output gate, which opens it by name) in this
/// namespace, then moved into the drill's; the gate's open descriptor follows the device.
final class DrillSandbox: @unchecked Sendable {
    let namespace: String
    let tap: String
    /// The clone's NIC and its gate (none when the VM has no NIC).
    let devices: GuestDevices

    init(tag: String, vm: VMDescription, nic: Bool, mac: String, address: String?, outputBufferBytes: Int, logger: Logger) throws {
        namespace = "us-drill-\(tag)"
        tap = "usdrill\(tag)"
        try HostCommand.run(["ip", "netns", "add", namespace])
        do {
            devices = try GuestDevices(vm: vm, diskImage: nil, tap: nic ? tap : nil, mac: mac, outputBufferBytes: outputBufferBytes,
                                       role: .unprotected, fence: nil, logger: logger)
        } catch {
            _ = try? HostCommand.run(["ip", "netns", "delete", namespace])
            throw error
        }
        do {
            try HostCommand.run(["ip", "-n", namespace, "link", "set", "lo", "up"])
            if nic {
                try HostCommand.run(["ip", "link", "set", tap, "netns", namespace])
                if let address { try HostCommand.run(["ip", "-n", namespace, "addr", "add", address, "dev", tap]) }
                try HostCommand.run(["ip", "-n", namespace, "link", "set", tap, "up"])
            }
        } catch {
            remove()
            throw error
        }
    }

    var qemuArguments: [String] { devices.qemuArguments }

    /// Stops the gate (its TAP, created without persistence, goes with its descriptor) and
    /// deletes the namespace (with any interface still in it). Idempotent.
    func remove() {
        devices.stop()
        _ = try? HostCommand.run(["ip", "netns", "delete", namespace])
    }

    /// Probes until success (nil), the deadline, or `stop`; returns why it failed.
    func waitForProbe(_ probe: DrillProbe, serialLog: String, deadline: ContinuousClock.Instant, timeout: Duration,
                      stop: StopSignal) -> String? {
        switch probe {
        case .tcp(let endpoint):
            // Entering a namespace changes the calling thread for good: a thread of its own.
            let failure = ProbeFailure()
            let path = "/var/run/netns/\(namespace)"
            JoinableThread(name: "drill-probe") {
                guard us_enter_network_namespace(path) == 0 else {
                    failure.set("cannot enter the drill's network namespace \(path): \(String(cString: strerror(errno)))")
                    return
                }
                var last = "none"
                while true {
                    if let reason = stop.reason {
                        failure.set("drill stopped: \(reason)")
                        return
                    }
                    guard ContinuousClock.now < deadline else {
                        failure.set("the probe \(probe) did not succeed within \(timeout) (last attempt: \(last))")
                        return
                    }
                    do {
                        try endpoint.connectOnce(timeoutMilliseconds: 500)
                        return
                    } catch {
                        last = "\(error)"
                    }
                    Thread.sleep(forTimeInterval: 0.05)
                }
            }.join()
            return failure.value
        case .serial(let marker):
            // The clone's serial log is new: all of it was printed after the clone started.
            while true {
                if let reason = stop.reason { return "drill stopped: \(reason)" }
                if let text = try? String(contentsOfFile: serialLog, encoding: .utf8), text.contains(marker) { return nil }
                guard ContinuousClock.now < deadline else {
                    return "the probe \(probe) did not succeed within \(timeout): the clone's console never showed the marker"
                }
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
    }
}

/// The probe thread's verdict, read once it has finished.
private final class ProbeFailure: Sendable {
    private let reason = Mutex<String?>(nil)
    func set(_ why: String) { reason.withLock { $0 = why } }
    var value: String? { reason.withLock { $0 } }
}

/// Runs the host's network and image tools (`ip`, `qemu-img`).
enum HostCommand {
    /// Runs `arguments` (the program found on PATH) to completion; throws with what it printed
    /// when it fails.
    @discardableResult
    static func run(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw DrillError("cannot run \(arguments[0]): \(error.localizedDescription)")
        }
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw DrillError("\(arguments.joined(separator: " ")) failed (exit \(process.terminationStatus)): "
                             + text.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return text
    }
}
