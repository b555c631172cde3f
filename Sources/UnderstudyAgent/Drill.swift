import Foundation
import Logging
import UnderstudyDisk
import UnderstudyQEMU
import UnderstudyReplica
import UnderstudySystem
import UnderstudyTransport

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
    /// - Parameter source: how the replica is copied (the backup agent's own drills ask its receiver);
    ///   default: the backup agent's `snapshot` control command, or the replica directory when no agent runs.
    public static func run(configuration: AgentConfiguration, probe: DrillProbe, timeout: Duration, stop: StopSignal,
                           logger: Logger, source: Inspection.SnapshotSource? = nil) throws -> DrillReport {
        let startedAt = Date().timeIntervalSince1970
        switch probe {
        case .tcp, .exec:
            let kind = probe.description.prefix { $0 != ":" }
            guard !configuration.nics.isEmpty else {
                throw DrillError("the \(kind) probe needs the guest's NIC, and \(configuration.source) has no network.tap: use a serial probe")
            }
            guard configuration.drill.sandboxAddress != nil else {
                throw DrillError("\(configuration.source): drill.sandbox_address: missing: the \(kind) probe needs an address in "
                                 + "the guest's subnet for the drill's side of the sandbox, e.g. \"10.77.0.1/24\"")
            }
        case .serial:
            break
        }
        let tag = String(format: "%06x", UInt32.random(in: 0...0xff_ffff))
        let directory = "/dev/shm/understudy-\(configuration.vm.id)-drill-\(tag)"
        let take = source ?? { try ReplicaSnapshot.take(configuration: configuration, into: $0, logger: logger) }
        let (snapshot, snapshotFrom) = try take(directory)
        defer { snapshot.remove() }
        logger.notice("replica copied for the drill", metadata: [
            "epoch": "\(snapshot.epoch)", "from": "\(snapshotFrom)", "replica-paused-ms": "\(String(format: "%.1f", snapshot.pausedMilliseconds))",
        ])

        var vm = configuration.vm
        vm.runDirectory = "\(configuration.vm.runDirectory)-drill-\(tag)"
        defer { try? FileManager.default.removeItem(atPath: vm.runDirectory) }
        let sandbox = try DrillSandbox(tag: tag, vm: vm, macs: configuration.nics.map(\.mac),
                                       address: configuration.drill.sandboxAddress, outputBufferBytes: configuration.outputBufferBytes,
                                       policy: configuration.policy, logger: logger)
        defer { sandbox.remove() }
        // Disk before NIC, as `GuestDevices` orders them: QEMU assigns PCI slots in order, and the
        // device state names each device by its slot.
        var arguments: [String] = []
        for (index, frozen) in snapshot.diskPaths.enumerated() {
            let overlay = "\(directory)/overlay\(index).qcow2"
            try HostCommand.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", frozen, overlay])
            arguments += index < vm.diskImages.count
                ? VirtioDisk.overlayArguments(overlay: overlay, nodeName: VirtioDisk.nodeName(index), deviceOptions: vm.virtio.deviceOptions)
                : VirtioDisk.overlayBlockdevArguments(overlay: overlay, nodeName: VMDescription.uefiVariablesNodeName)
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

        let failure = sandbox.waitForProbe(probe, serialLog: vm.serialLog, scratch: vm.runDirectory, deadline: deadline, timeout: timeout, stop: stop)
        let recovery = ContinuousClock.now - started
        let statistics = sandbox.devices.outputStatistics
        var report = DrillReport(ok: failure == nil, message: "", vm: vm.id, probe: "\(probe)", epoch: snapshot.epoch,
                                 stateAgeMs: snapshot.stateAgeMilliseconds, replicaPausedMs: snapshot.pausedMilliseconds,
                                 snapshotFrom: snapshotFrom, diskCopy: snapshot.diskCopy?.rawValue, timeToRunningMs: running.seconds * 1000,
                                 recoveryMs: failure == nil ? recovery.seconds * 1000 : nil, sandbox: sandbox.namespace,
                                 sandboxFramesFromClone: statistics?.sentFrames ?? 0, sandboxFramesToClone: statistics?.framesToGuest ?? 0,
                                 startedAt: startedAt)
        report.message = failure ?? "the clone from checkpoint \(snapshot.epoch) answered \(probe) \(recovery.wholeMilliseconds) ms after it started"
        return report
    }
}
