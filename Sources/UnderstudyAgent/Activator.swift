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
/// the replica is used up (marked empty): this node is the primary from here on, and the VM comes
/// up with dirty tracking ready so that it can be protected again (re-protection). A QEMU that
/// fails before it loaded the checkpoint leaves the replica activatable.
public enum Activator {
    public struct Activation: Sendable {
        public let source: QEMUCheckpointSource
        public let epoch: UInt64
        public let duration: Duration
    }

    public static func activate(store: ReplicaStore, description: VMDescription, preloadLibrary: String?,
                                tracking: DirtyTrackingPreference, extraArguments: [String] = [], standby: QEMUProcess? = nil,
                                boundary: QEMUCheckpointSource.EpochBoundary? = nil, beforeStop: (@Sendable () -> Void)? = nil,
                                logger: Logger, onExit: @escaping @Sendable (QEMUError) -> Void) throws -> Activation {
        let started = ContinuousClock.now
        guard description.memoryBytes == store.identity.memorySize, description.id == store.identity.id else {
            throw ReplicaError.identityMismatch("the replica holds \(store.identity), the configuration describes \(description.id) "
                                                + "with \(description.memoryBytes) bytes")
        }
        try FileManager.default.createDirectory(atPath: description.runDirectory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let checkpoint = try store.consumeCommittedCheckpoint()
        logger.notice("activating the VM from the replica", metadata: ["vm": "\(description.id)", "epoch": "\(checkpoint.epoch)"])
        // Marked used up before QEMU starts, so that a crash from here on never leaves a replica
        // that looks activatable while a guest may have written into it; given back below when
        // QEMU failed before it loaded the checkpoint (no guest ran).
        var loaded = false
        let source: QEMUCheckpointSource
        do {
            source = try QEMUCheckpointSource(description: description,
                                              start: .restore(ramFile: store.memoryPath, deviceState: checkpoint.deviceState, standby: standby),
                                              preloadLibrary: preloadLibrary, tracking: tracking, extraArguments: extraArguments,
                                              boundary: boundary, beforeStop: beforeStop, loaded: { loaded = true }, logger: logger,
                                              onExit: onExit)
        } catch {
            if !loaded {
                do {
                    try store.returnConsumedCheckpoint()
                    logger.notice("QEMU did not start; the replica stays activatable", metadata: ["epoch": "\(checkpoint.epoch)"])
                } catch let giveBack {
                    logger.error("QEMU did not start, and the replica could not be marked activatable again",
                                 metadata: ["error": "\(giveBack)"])
                }
            }
            throw error
        }
        let duration = ContinuousClock.now - started
        logger.notice("VM running on this node", metadata: ["vm": "\(description.id)", "epoch": "\(checkpoint.epoch)",
                                                            "seconds": "\(duration)"])
        return Activation(source: source, epoch: checkpoint.epoch, duration: duration)
    }
}
