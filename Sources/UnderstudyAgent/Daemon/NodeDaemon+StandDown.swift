import Foundation
import Logging
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

/// A lost backup that comes back after a spare host took its place (`[fleet]`, docs/OPERATIONS.md
/// "Spare hosts"), at its start or while it runs on (it was only cut off): its replica is a past
/// the VM has moved on from, and a second backup would only confuse the fleet. It must neither
/// serve nor ever activate.
extension NodeDaemon {
    /// The VM's spare claim when it replaces this node; nil when none does. A registry out of
    /// reach starts the node as the backup: its fence reads the claim again before any activation,
    /// and its `FleetClaimWatcher` keeps reading it. The decision is the running backup's
    /// (`FleetClaimStateMachine`), with no primary connected yet.
    func standingDown(fleet: FleetConfiguration, logger: Logger) -> SpareClaim? {
        let registry = FleetRegistry(endpoints: fleet.endpoints, tls: fleet.tls, timeout: fleet.requestTimeout)
        let reading: FleetClaimStateMachine.Reading
        do {
            reading = .claim(try registry.claim(on: configuration.vm.id))
        } catch {
            reading = .unreadable("\(error)")
        }
        var machine = FleetClaimStateMachine(node: configuration.nodeName, peer: FleetPeerRecord.Peer(
            name: configuration.peerName, address: configuration.peerAddress?.description))
        for action in machine.observe(reading, as: .backup(sessionConnected: false)) {
            switch action {
            case .standDown(let claim):
                return claim
            case .warnUnreachable(let why):
                logger.warning("fleet registry: cannot read the VM's spare claim at start; starting as the backup (activation checks the claim again)",
                               metadata: ["error": "\(why)"])
            case .follow, .ignoreMalformed, .awaitSessionEnd, .noteReachable:
                break
            }
        }
        return nil
    }

    /// Stands down: removes the stale replica (what this node owns in its replica directory),
    /// then reports `stood-down` (control socket, registry) until stopped.
    func standDown(claim: SpareClaim, fleet: FleetConfiguration, logger: Logger) async throws {
        let reason = "\(claim.node) on \(claim.host) protects \(configuration.vm.id) in place of \(claim.lostBackup) (spare claim): "
            + "this node's replica is stale; it stood down and will not activate"
        logger.error("standing down", metadata: ["reason": "\(reason)"])
        if let directory = configuration.replicaDirectory {
            for removed in Self.removeOwnedEntries(of: directory, logger: logger) {
                logger.notice("removed the stale replica's file", metadata: ["path": "\(removed)"])
            }
        }
        var backup = BackupStatus(vm: configuration.vm.id, state: .stoodDown)
        backup.detail = reason
        let status = AgentStatus.backup(backup)
        let control = try ControlServer(path: configuration.controlSocket, status: { status }, commands: [:])
        defer { control.close() }
        let publisher = FleetPublisher(configuration: fleet, logger: logger) { [configuration] in
            [FleetRecord(status: status, host: fleet.host, node: configuration.nodeName, peer: configuration.peerName, publishedAt: 0)]
        }
        defer { publisher.stop() }
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [.init(service: StoodDownService())], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    /// Removes the entries of `directory` this process's user owns (the replica: memory image,
    /// journal, state); returns their paths. Others' files are left, and named in the log.
    static func removeOwnedEntries(of directory: String, logger: Logger) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var removed: [String] = []
        for name in names.sorted() {
            let path = "\(directory)/\(name)"
            var info = stat()
            guard lstat(path, &info) == 0 else { continue }
            guard info.st_uid == getuid() else {
                logger.warning("left a file of another user in the replica directory", metadata: ["path": "\(path)"])
                continue
            }
            do {
                try FileManager.default.removeItem(atPath: path)
                removed.append(path)
            } catch {
                logger.error("cannot remove the stale replica's file", metadata: ["path": "\(path)", "error": "\(error)"])
            }
        }
        return removed
    }
}
