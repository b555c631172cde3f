import Foundation
import Logging
import UnderstudyProtocol
import UnderstudyQEMU
import UnderstudyReplica

/// Starts the VM on the backup from the replica: RAM from the replica's memory image, devices
/// from the last committed device state (QEMU `-incoming defer`, then `migrate-incoming` from
/// the saved state), resumes it and announces its new location on the network.
///
/// Only a replica whose last checkpoint committed whole can be activated; the memory image is
/// then exactly that checkpoint (see `ReplicaStore`). The running VM writes into the image, so
/// the replica is used up: this node is the primary from here on.
public enum Activator {
    public struct Activation: Sendable {
        public let qemu: QEMUProcess
        public let epoch: UInt64
        public let duration: Duration
    }

    public static func activate(store: ReplicaStore, description: VMDescription, extraArguments: [String] = [],
                                logger: Logger, onExit: @escaping @Sendable (QEMUError) -> Void) throws -> Activation {
        let started = ContinuousClock.now
        let state = store.state
        guard state.phase == .committed else {
            throw ReplicaError.notReady("the replica in \(store.directory) is \(state.phase), not committed: nothing to activate "
                                        + "(a primary must finish its initial sync and one checkpoint first)")
        }
        guard description.memoryBytes == state.identity.memorySize, description.id == state.identity.id else {
            throw ReplicaError.identityMismatch("the replica holds \(state.identity), the configuration describes \(description.id) "
                                                + "with \(description.memoryBytes) bytes")
        }
        try FileManager.default.createDirectory(atPath: description.runDirectory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        guard FileManager.default.createFile(atPath: description.deviceStateFile, contents: Data(state.deviceState),
                                             attributes: [.posixPermissions: 0o600]) else {
            throw QEMUError.io("cannot write \(description.deviceStateFile)")
        }
        logger.notice("activating the VM from the replica", metadata: ["vm": "\(description.id)", "epoch": "\(state.committedEpoch)"])
        let qemu = try QEMUProcess(description: description, ramFile: store.memoryPath, mode: .incoming, preloadLibrary: nil,
                                   extraArguments: extraArguments, logger: logger, onExit: onExit)
        do {
            try qemu.qmp.execute("migrate-incoming", arguments: ["uri": "exec:cat \(shellQuoted(description.deviceStateFile))"])
            try waitUntilRunning(qemu, timeout: .seconds(30))
            // Gratuitous ARP/RARP from the guest NICs, so switches learn the VM's new port.
            try qemu.qmp.execute("announce-self", arguments: ["initial": 50, "max": 550, "rounds": 5, "step": 100])
        } catch {
            qemu.stop()
            throw error
        }
        let duration = ContinuousClock.now - started
        logger.notice("VM running on this node", metadata: ["vm": "\(description.id)", "epoch": "\(state.committedEpoch)",
                                                            "seconds": "\(duration)"])
        return Activation(qemu: qemu, epoch: state.committedEpoch, duration: duration)
    }

    private static func waitUntilRunning(_ qemu: QEMUProcess, timeout: Duration) throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            let status = try qemu.qmp.execute("query-status") as? [String: Any]
            if status?["status"] as? String == "running" { return }
            let migration = try qemu.qmp.execute("query-migrate") as? [String: Any]
            if migration?["status"] as? String == "failed" {
                throw QEMUError.qmp("loading the device state failed: \(migration?["error-desc"] as? String ?? "no detail")")
            }
            guard ContinuousClock.now < deadline else {
                throw QEMUError.qmp("the VM did not start within \(timeout) (status \(status?["status"] ?? "?"))")
            }
            Thread.sleep(forTimeInterval: 0.005)
        }
    }

    private static func shellQuoted(_ path: String) -> String { "'" + path.replacingOccurrences(of: "'", with: "'\\''") + "'" }
}
