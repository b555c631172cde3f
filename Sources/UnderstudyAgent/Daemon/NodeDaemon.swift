import Foundation
import Logging
import ServiceLifecycle
import UnderstudySystem
import UnderstudyTransport

/// One node's process, as `understudy run` (and `primary`, `backup`, `activate`) starts it: the
/// configuration file parsed once and checked, the starting role decided, then the control
/// socket served and the `PairNode` run as a `NodeService` in a `ServiceGroup`, which turns
/// SIGTERM and SIGINT into a graceful shutdown.
public struct NodeDaemon: Sendable {
    /// How the node comes to its role.
    public enum Mode: Sendable, Equatable {
        /// `understudy run`: the role from `node.role`, the node's `RoleRecord` and `--start-as`
        /// (`override`). Each role change is recorded, a stop hands the VM over as
        /// `node.on_stop` says, and SIGHUP reloads the file.
        case daemon(override: NodeRole?)
        /// `understudy primary`, `backup` or `activate`: this role, not recorded; a stop stops
        /// the VM here, and SIGHUP keeps its default action.
        case fixed(PairNode.Start)
    }

    public let configuration: AgentConfiguration
    /// The role to start in, and why.
    public let decision: StartingRole.Decision
    private let mode: Mode
    private let path: String
    /// What `configuration` was built from: a reload compares the file's next version with it.
    private let document: TOMLDocument
    /// Nil in `.fixed` mode.
    private let record: RoleRecord?
    /// The spare this node protects to since a claim (`FleetPeerRecord`); nil: the configuration's peer.
    private let recordedPeer: FleetPeerRecord.Peer?

    /// Reads the configuration file and checks everything the node needs before it starts.
    public init(configurationFile path: String, mode: Mode) throws {
        try self.init(document: TOMLDocument(contentsOfFile: path), path: path, mode: mode)
    }

    /// - Parameter path: the file `document` was read from, read again on SIGHUP.
    /// - Throws: `ConfigurationError` for a missing or invalid key, `RoleRecordError` for an
    ///   unreadable role record.
    public init(document: TOMLDocument, path: String, mode: Mode) throws {
        var configuration = try AgentConfiguration(document: document)
        recordedPeer = configuration.fleet == nil ? nil : try FleetPeerRecord(directory: configuration.stateDirectory).load()
        if let peer = recordedPeer {
            // A spare took the lost backup's place: the file still names the lost one.
            configuration.peerName = peer.name
            configuration.peerAddress = try peer.address.map { text throws(TransportError) in try Endpoint(parsing: text) }
        }
        switch mode {
        case .daemon(let override):
            guard let configured = override ?? configuration.role else {
                throw ConfigurationError(source: configuration.source, key: "node.role", message:
                    "missing required key: understudy run starts a new pair's node in this role (\"primary\" or \"backup\")")
            }
            // The node can take either role over its life (switchover, failover): both must be complete.
            _ = try configuration.primary()
            _ = try configuration.backup()
            let record = RoleRecord(directory: configuration.stateDirectory)
            decision = StartingRole.decide(configured: configured, last: try record.load(), override: override)
            self.record = record
        case .fixed(let start):
            switch start {
            case .activate:
                guard configuration.replicaDirectory != nil else {
                    throw ConfigurationError(source: configuration.source, key: "backup.replica_dir",
                                             message: "missing required key: activation needs the replica")
                }
                _ = try configuration.backup()
            case .backup:
                _ = try configuration.backup()
            case .primary, .primaryUnlessActiveElsewhere:
                _ = try configuration.primary()
            }
            decision = StartingRole.Decision(start: start, reason: "given on the command line")
            record = nil
        }
        self.configuration = configuration
        self.mode = mode
        self.path = path
        self.document = document
    }

    /// Runs the node until a graceful shutdown (SIGTERM, SIGINT) has stopped it.
    /// - Parameters:
    ///   - levels: the level of `logger`'s handlers, which a reload changes.
    ///   - levelOverride: `--log-level`, which wins over the file's on reload.
    /// - Throws: what ended the node other than a requested stop (`NodeServiceError` when QEMU
    ///   exited, `AgentError` when another node is the active copy, ...).
    public func run(logger: Logger, levels: LogLevelControl, levelOverride: Logger.Level?) async throws {
        var metadata: Logger.Metadata = ["vm": "\(configuration.vm.id)", "role": "\(decision.start)", "reason": "\(decision.reason)"]
        if let record { metadata["record"] = "\(record.path)" }
        logger.notice("starting", metadata: metadata)
        if configuration.witnessEndpoints.isEmpty, configuration.failover.withoutWitness {
            logger.warning("""
                no witness: automatic failover is on by failover.without_witness. If the two nodes lose each other while both \
                run, both can be active (split brain); see docs/OPERATIONS.md
                """)
        }
        if let fleet = configuration.fleet, decision.start == .backup, let claim = standingDown(fleet: fleet, logger: logger) {
            try await standDown(claim: claim, fleet: fleet, logger: logger)
            return
        }
        guard let claim = try await serve(logger: logger, levels: levels, levelOverride: levelOverride), let fleet = configuration.fleet else { return }
        // Once the backup's listener, replica and control socket are closed: the same stand-down as at a start.
        try await standDown(claim: claim, fleet: fleet, logger: logger)
    }

    /// Runs the node's roles until a graceful shutdown, or until a spare's claim replaced it as
    /// the backup (`FleetClaimWatcher`): then returns that claim, once the node has stopped.
    private func serve(logger: Logger, levels: LogLevelControl, levelOverride: Logger.Level?) async throws -> SpareClaim? {
        let stop = StopSignal(signals: [])
        let node = try PairNode(configuration: configuration, record: record, logger: logger, stop: stop)
        // The spare's heartbeat datagram endpoint too, which the configuration's heartbeat.udp_peer is not.
        if let recordedPeer { node.follow(recordedPeer) }
        let control = try ControlServer(path: configuration.controlSocket, status: { node.status() }, commands: node.commands)
        defer { control.close() }
        let watcher = configuration.fleet.map { fleet in
            FleetClaimWatcher(configuration: fleet, vm: configuration.vm.id, node: configuration.nodeName,
                              peer: recordedPeer ?? FleetPeerRecord.Peer(name: configuration.peerName, address: configuration.peerAddress?.description),
                              logger: logger,
                              side: { node.claimSide }) { [configuration] peer, claim in
                logger.notice("a spare host protects the VM from now on: the next session synchronises it in full", metadata: [
                    "spare": "\(claim.node)", "spare-host": "\(claim.host)", "address": "\(claim.listen)", "in-place-of": "\(claim.lostBackup)"])
                do {
                    try FleetPeerRecord(directory: configuration.stateDirectory).save(peer)
                } catch {
                    logger.error("cannot record the spare as this node's peer: a restart would protect to peer.name again", metadata: ["error": "\(error)"])
                }
                node.follow(peer)
            } standDown: { claim in
                stop.trigger(.replaced(claim))
            }
        }
        defer { watcher?.stop() }
        let publisher = configuration.fleet.map { fleet in
            logger.notice("publishing to the fleet registry", metadata: ["host": "\(fleet.host)", "lease-ttl": "\(fleet.leaseTTL)"])
            return FleetPublisher(configuration: fleet, logger: logger) { [configuration] in
                [FleetRecord(status: node.status(), host: fleet.host, node: configuration.nodeName, peer: watcher?.peer.name ?? configuration.peerName,
                             publishedAt: 0)]
            } descriptions: { [configuration] in
                // Only the node running the VM describes it: a spare protects a running VM.
                node.status().role == .primary ? [VMDescriptionRecord(configuration: configuration, host: fleet.host, publishedAt: 0)] : []
            }
        }
        defer { publisher?.stop() }
        let service = switch mode {
        case .daemon:
            NodeService(node: node, start: decision.start, onStop: configuration.onStop, stop: stop,
                        reloader: ConfigurationReloader(path: path, loaded: document, levels: levels, levelOverride: levelOverride,
                                                        policy: node.policy, logger: logger))
        case .fixed:
            NodeService(node: node, start: decision.start, onStop: .stop, stop: stop, reloader: nil)
        }
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [.init(service: service)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch let error as NodeServiceError {
            guard case .replaced(let claim) = error.reason else { throw error }
            return claim
        }
        return nil
    }
}
