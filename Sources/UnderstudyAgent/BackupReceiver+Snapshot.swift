import Foundation
import Logging

extension BackupReceiver {
    /// Takes a `ReplicaSnapshot` into `directory` (absolute, not existing yet) between two pieces
    /// of replica work: checkpoints arriving meanwhile queue up, and their acknowledgements wait,
    /// for as long as the copy takes (`pausedMilliseconds`).
    public func snapshot(into directory: String) throws -> ReplicaSnapshot {
        try withReplicaPaused { store in try ReplicaSnapshot.take(of: store, into: directory) }
    }

    /// The control command `snapshot DIRECTORY`, which `understudy drill` sends to a running
    /// backup: replies with the `ReplicaSnapshot`, or a `ControlReply` saying why not.
    public func snapshotCommand(logger: Logger) -> ControlServer.Command {
        { [self] directory in
            guard directory.hasPrefix("/") else {
                return ControlServer.encode(ControlReply(ok: false, message: "usage: snapshot DIRECTORY (an absolute path that does not exist yet)"))
            }
            do {
                let snapshot = try snapshot(into: directory)
                logger.notice("replica snapshot taken for a drill", metadata: [
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
