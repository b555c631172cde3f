import Foundation
import Logging
import UnderstudySystem

extension BackupReceiver {
    /// Takes a `ReplicaSnapshot` into `directory` (absolute, not existing yet) while checkpoints
    /// go on being applied. The bulk of the memory image is copied between applies, with the
    /// replica noting every page they write; then, in one window between two pieces of replica
    /// work (`withReplicaPaused`), those pages are copied again, and the disk and device state
    /// copied. Checkpoints arriving in the windows queue up and their acknowledgements wait:
    /// `pausedMilliseconds` is how long. Without `memory` (an inspection of the disk), the window
    /// copies only the disk and the device state.
    public func snapshot(into directory: String, memory: Bool = true) throws -> ReplicaSnapshot {
        // Timed inside the windows: waiting for the apply in progress to finish holds nothing up.
        var paused = Duration.zero
        var snapshot = try withReplicaPaused { store in
            let started = ContinuousClock.now
            defer { paused += ContinuousClock.now - started }
            let prepared = try ReplicaSnapshot.prepare(of: store, into: directory)
            if memory { store.recordWrittenPages() }
            return prepared
        }
        do {
            // The bulk copy waits for idle cores: checkpoints go on being applied meanwhile, and
            // this copy must not slow them (nor the primary, on a host it shares with the backup).
            if memory { try IdlePriority.run { try snapshot.copyMemory(of: store) } }
            try withReplicaPaused { store in
                let started = ContinuousClock.now
                defer { paused += ContinuousClock.now - started }
                guard memory else { return try snapshot.finish(from: store, memoryWritten: nil) }
                guard let written = store.takeWrittenPages() else {
                    throw DrillError("the replica was resynchronised while it was being copied: try again")
                }
                try snapshot.finish(from: store, memoryWritten: written)
            }
            snapshot.pausedMilliseconds = paused.seconds * 1000
            return snapshot
        } catch {
            if memory { withReplicaPaused { _ = $0.takeWrittenPages() } }
            snapshot.remove()
            throw error
        }
    }

    /// The control commands `snapshot DIRECTORY`, which `understudy drill` sends to a running
    /// backup, and (`memory` false) `snapshot-disk DIRECTORY`, which `understudy inspect` sends:
    /// replies with the `ReplicaSnapshot`, or a `ControlReply` saying why not.
    public func snapshotCommand(memory: Bool = true, logger: Logger) -> ControlServer.Command {
        { [self] directory in
            guard directory.hasPrefix("/") else {
                return ControlServer.encode(ControlReply(ok: false, message: "usage: \(memory ? "snapshot" : "snapshot-disk") DIRECTORY (an absolute path that does not exist yet)"))
            }
            do {
                let snapshot = try snapshot(into: directory, memory: memory)
                logger.notice(memory ? "replica snapshot taken for a drill" : "replica disk snapshot taken for an inspection", metadata: [
                    "epoch": "\(snapshot.epoch)", "directory": "\(directory)", "disk-copy": "\(snapshot.diskCopy.map { "\($0)" } ?? "no disk")",
                    "replica-paused-ms": "\(String(format: "%.1f", snapshot.pausedMilliseconds))",
                ])
                return ControlServer.encode(snapshot)
            } catch {
                logger.warning("replica snapshot refused", metadata: ["directory": "\(directory)", "error": "\(error)"])
                return ControlServer.encode(ControlReply(ok: false, message: "\(error)"))
            }
        }
    }
}
