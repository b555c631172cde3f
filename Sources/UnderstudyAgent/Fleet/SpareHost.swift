import Foundation
import Logging
import UnderstudySystem
import UnderstudyWitness
#if canImport(Glibc)
import Glibc
#endif

/// `understudy spare`: a host that restores the protection of VMs whose backup host is gone.
/// Every registry period it reads the fleet registry, lets the pure `SpareClaimStateMachine`
/// decide, and carries out its claim: the backup node's files first (`SpareAssignment`), then
/// the claim in one etcd transaction, then, if this host won it, the backup node itself, a child
/// `understudy backup --config <state_dir>/<vm>/backup.toml` in its own process group (its log
/// beside the configuration). The primary follows the claim and synchronises the new replica in
/// full. A claim naming this host with no backup node running (the spare restarted, or the
/// node exited) starts it again, on the claim's port.
///
/// The spare publishes its host's capacity to the registry (no VM entries of its own: its
/// backup nodes publish theirs, which is what keeps their claims live). Stopping it stops its
/// backup nodes (SIGTERM, then SIGKILL after `childStopTimeout`).
public final class SpareHost: Sendable {
    public let configuration: SpareConfiguration
    /// The `understudy` binary the backup nodes run.
    public let executable: String
    private let logger: Logger
    private let registry: FleetRegistry
    static let childStopTimeout: Duration = .seconds(15)
    static let restartInterval: Duration = .seconds(30)

    public init(configuration: SpareConfiguration, executable: String, logger: Logger) {
        self.configuration = configuration
        self.executable = executable
        self.logger = logger
        let fleet = configuration.fleet
        registry = FleetRegistry(endpoints: fleet.endpoints, tls: fleet.tls, timeout: fleet.requestTimeout)
    }

    /// One running backup node.
    private struct Child {
        var assignment: SpareAssignment
        var process: SpawnedProcess
    }

    /// Runs until `stop` is triggered; call on a dedicated thread.
    public func run(until stop: StopSignal) {
        let fleet = configuration.fleet
        let publisher = FleetPublisher(configuration: fleet, logger: logger) { [] }
        defer { publisher.stop() }
        var machine = SpareClaimStateMachine(host: fleet.host, reprotectAfter: configuration.reprotectAfter)
        var children: [String: Child] = [:]
        var reported: [String: String] = [:]
        var unreachable = false
        /// When each VM's backup node was last started: one that keeps exiting is restarted at most every `restartInterval`.
        var started: [String: ContinuousClock.Instant] = [:]
        logger.notice("spare host watching the fleet registry", metadata: [
            "host": "\(fleet.host)", "node": "\(configuration.nodeName)", "slots": "\(configuration.slots)",
            "reprotect-after": "\(configuration.reprotectAfter)"])
        defer { stopAll(children) }
        repeat {
            reap(&children)
            let records: [FleetRecord], descriptions: [String: VMDescriptionRecord], claims: [String: FleetRegistry.ClaimEntry]
            do {
                records = try registry.records()
                descriptions = try registry.descriptions()
                claims = try registry.claims()
                if unreachable { logger.notice("fleet registry reachable again") }
                unreachable = false
            } catch {
                if !unreachable { logger.warning("fleet registry: cannot read it; claiming nothing meanwhile", metadata: ["error": "\(error)"]) }
                unreachable = true
                continue
            }
            var usable: [String: VMDescriptionRecord] = [:]
            for (vm, description) in descriptions {
                if let problem = SpareAssignment.problem(with: description, spare: configuration) {
                    if reported[vm] != problem { logger.warning("cannot protect this VM", metadata: ["vm": "\(vm)", "why": "\(problem)"]) }
                    reported[vm] = problem
                } else {
                    reported[vm] = nil
                    usable[vm] = description
                }
            }
            retire(claims: claims, records: records, children: &children)
            adopt(claims: claims, descriptions: usable, children: &children, started: &started)
            var capacity: HostCapacity?
            let freeSlots = configuration.slots - children.count
            if freeSlots > 0 {
                var measured = HostCapacity(host: fleet.host, resources: HostResources.measure(replicaDirectory: configuration.replicaDirectory),
                                            slotMemoryBytes: fleet.slotMemoryBytes, maxPrimaries: fleet.maxPrimaries, maxBackups: configuration.slots,
                                            records: records, publishedAt: Date().timeIntervalSince1970)
                // A backup node just started may not have published its entry yet.
                measured.backupSlots = min(measured.backupSlots, freeSlots)
                capacity = measured
            }
            let observation = SpareClaimStateMachine.Observation(records: records, descriptions: usable, claims: claims, capacity: capacity,
                                                                 serving: Set(children.keys))
            guard let claim = machine.observe(observation, at: .now) else { continue }
            take(claim, children: &children, started: &started)
        } while !stop.wait(timeout: fleet.publishPeriod)
    }

    /// The lowest slot no backup node uses.
    private func freeSlot(_ children: [String: Child]) -> Int? {
        let used = Set(children.values.map(\.assignment.slot))
        return (0..<configuration.slots).first { !used.contains($0) }
    }

    /// Claims the VM; if this host wins, starts its backup node.
    private func take(_ claim: SpareClaimStateMachine.Claim, children: inout [String: Child], started: inout [String: ContinuousClock.Instant]) {
        guard let slot = freeSlot(children) else { return }
        let assignment = SpareAssignment(vm: claim.vm, slot: slot, spare: configuration)
        let metadata: Logger.Metadata = ["vm": "\(claim.vm)", "lost-backup": "\(claim.lostBackup)", "listen": "\(assignment.listen)"]
        do {
            // The files first: a claim this host then cannot serve would only delay another spare.
            try assignment.prepare(claim.description, spare: configuration)
            let value = SpareClaim(host: configuration.fleet.host, node: configuration.nodeName, listen: assignment.listen.description,
                                   udp: assignment.datagramListen(claim.description)?.description, lostBackup: claim.lostBackup,
                                   claimedAt: Date().timeIntervalSince1970)
            guard try registry.claim(claim.vm, value, replacing: claim.replacing) else {
                logger.notice("another spare claimed the VM first", metadata: metadata)
                try? FileManager.default.removeItem(atPath: assignment.directory)
                try? FileManager.default.removeItem(atPath: assignment.replicaDirectory)
                return
            }
            logger.notice("claimed the VM: starting its backup node; its primary synchronises it in full", metadata: metadata)
            start(assignment, children: &children)
            started[claim.vm] = .now
        } catch {
            logger.error("cannot claim the VM", metadata: metadata.merging(["error": "\(error)"]) { $1 })
        }
    }

    /// Starts the backup node of each VM whose claim names this host and that runs none.
    private func adopt(claims: [String: FleetRegistry.ClaimEntry], descriptions: [String: VMDescriptionRecord], children: inout [String: Child],
                       started: inout [String: ContinuousClock.Instant]) {
        let now = ContinuousClock.now
        for (vm, entry) in claims.sorted(by: { $0.key < $1.key })
            where entry.claim.node == configuration.nodeName && entry.claim.host == configuration.fleet.host && children[vm] == nil
            && started[vm].map({ now - $0 >= Self.restartInterval }) ?? true {
            guard let description = descriptions[vm], let port = (try? Endpoint(parsing: entry.claim.listen))?.port, port >= configuration.portBase,
                  case let slot = Int(port - configuration.portBase), slot < configuration.slots,
                  !children.values.contains(where: { $0.assignment.slot == slot }) else { continue }
            let assignment = SpareAssignment(vm: vm, slot: slot, spare: configuration)
            do {
                try assignment.prepare(description, spare: configuration)
                logger.notice("this host's claim has no backup node running: starting it", metadata: ["vm": "\(vm)", "listen": "\(assignment.listen)"])
                start(assignment, children: &children)
                started[vm] = now
            } catch {
                logger.error("cannot prepare the claimed VM's backup node", metadata: ["vm": "\(vm)", "error": "\(error)"])
            }
        }
    }

    private func start(_ assignment: SpareAssignment, children: inout [String: Child]) {
        do {
            let process = try SpawnedProcess(executable: executable, arguments: [executable, "backup", "--config", assignment.configurationFile],
                                             environment: ProcessInfo.processInfo.environment, output: assignment.logFile)
            children[assignment.vm] = Child(assignment: assignment, process: process)
            logger.notice("backup node started", metadata: ["vm": "\(assignment.vm)", "pid": "\(process.pid)", "log": "\(assignment.logFile)"])
        } catch {
            logger.error("cannot start the backup node", metadata: ["vm": "\(assignment.vm)", "error": "\(error)"])
        }
    }

    /// Stops the backup nodes whose VM another spare claimed since (this one was deemed gone),
    /// unless the VM runs here now (activated: then it is this host's primary, not a backup).
    private func retire(claims: [String: FleetRegistry.ClaimEntry], records: [FleetRecord], children: inout [String: Child]) {
        for (vm, child) in children {
            guard let claim = claims[vm]?.claim, claim.node != configuration.nodeName,
                  !records.contains(where: { $0.vm == vm && $0.host == configuration.fleet.host && $0.role == .primary }) else { continue }
            logger.warning("another spare holds this VM's claim now: stopping its backup node here", metadata: ["vm": "\(vm)", "claim": "\(claim.node)"])
            stopAll([vm: child])
            try? FileManager.default.removeItem(atPath: child.assignment.replicaDirectory)
            children[vm] = nil
        }
    }

    /// Forgets the backup nodes that exited (their claims go stale unless restarted).
    private func reap(_ children: inout [String: Child]) {
        for (vm, child) in children {
            guard let status = child.process.exitStatus() else { continue }
            logger.error("backup node exited", metadata: ["vm": "\(vm)", "status": "\(status)", "log": "\(child.assignment.logFile)"])
            children[vm] = nil
        }
    }

    private func stopAll(_ children: [String: Child]) {
        for child in children.values { child.process.signalGroup(SIGTERM) }
        let deadline = ContinuousClock.now + Self.childStopTimeout
        for child in children.values {
            while child.process.exitStatus() == nil {
                if ContinuousClock.now >= deadline {
                    child.process.signalGroup(SIGKILL)
                    _ = child.process.exitStatus()
                }
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
    }
}
