import Foundation
import Logging
import UnderstudyReplica

extension ReplicaSnapshot {
    /// Copies the replica of `configuration`'s backup node into `directory` (absolute, not existing
    /// yet), for a drill or an inspection: asks the running backup agent (its `snapshot` control
    /// command); when none answers, opens the replica here (which takes its lock, so no agent can
    /// start on it meanwhile, and refuses one an agent or another copy holds) and copies it.
    /// Returns the snapshot and where it came from ("backup agent" or "replica directory").
    /// Without `memory`, only the disk and the device state are copied.
    static func take(configuration: AgentConfiguration, into directory: String, memory: Bool = true,
                     logger: Logger) throws -> (ReplicaSnapshot, String) {
        let reply: Data
        do {
            reply = try ControlServer.request("\(memory ? "snapshot" : "snapshot-disk") \(directory)", path: configuration.controlSocket)
        } catch {
            guard let replicaDirectory = configuration.replicaDirectory else {
                throw DrillError("\(configuration.source): backup.replica_dir: missing: this is not a backup node's configuration")
            }
            logger.info("no backup agent answers; copying the replica directory", metadata: ["control": "\(configuration.controlSocket)"])
            let store = try ReplicaStore(directory: replicaDirectory, identity: configuration.identity, diskPaths: configuration.vm.replicatedImages)
            return (try take(of: store, into: directory, memory: memory), "replica directory")
        }
        if let snapshot = try? JSONDecoder().decode(ReplicaSnapshot.self, from: reply) { return (snapshot, "backup agent") }
        let refusal = (try? JSONDecoder().decode(ControlReply.self, from: reply))?.message ?? String(decoding: reply, as: UTF8.self)
        throw DrillError("the backup agent did not copy the replica: \(refusal)")
    }
}
