import Foundation
import UnderstudyAgent
import UnderstudySystem

/// A small fleet on one machine, and the host failures issue 21 asks it to survive: hosts h1..h4
/// as network namespaces on a management LAN (`FleetHosts`), each running its agents
/// (`understudy run`, each node with its own state and run directories) and their QEMU, which
/// replicate over that LAN; a three-member `EtcdCluster` (registry and witness) on the LAN's
/// address here; two counter guests, vm-a (primary on h1, backup on h2) and vm-b (primary on h2,
/// backup on h3), each on a guest network of its own (`PairNetwork` with its TAPs in the hosts,
/// and a counter client in its namespace); h4 a spare for both. Both backups drill on a short
/// `drill.every`. Killing a host SIGKILLs everything in its namespace.
///
/// `run()` checks, in order: (a) one etcd member, the leader, killed changes nothing (no role,
/// peer or claim: the registry's and the witness's 3 s leases ride through the election); (b) h3, vm-b's backup host, killed (everything in its namespace, SIGKILL): the spare claims
/// vm-b and its primary protects to it, timed from the kill; (c) h1, vm-a's primary host, killed:
/// vm-a's backup takes over, then the spare protects it, timed from the kill; (d) h3 and h1
/// restarted with their old configurations stand down and nothing doubles. Throughout, the
/// registry is sampled every 200 ms for two nodes reporting one VM as primary, and the clients
/// must lose no output they had received. Everything it made is removed when it ends, whatever
/// the outcome.
public final class FleetScenario: @unchecked Sendable {
    public struct Options: Sendable {
        /// The `understudy` binary the hosts run.
        public var executable: String
        /// Deploy/guest of this checkout: the counter guest's sources.
        public var guestDirectory: URL
        /// The backups' `drill.every`.
        public var drillEvery = "10s"
        public var keep = false

        public init(executable: String, guestDirectory: URL) {
            self.executable = executable
            self.guestDirectory = guestDirectory
        }
    }

    /// One VM's pair: its name, its nodes (certificate names, by host) and where they live.
    struct Pair {
        let vm: String
        let primaryHost: String
        let backupHost: String
        let directory: String
        let network: PairNetwork
        let configs: (primary: String, backup: String)
        var primaryNode: String { "\(primaryHost)-\(vm)" }
        var backupNode: String { "\(backupHost)-\(vm)" }
    }

    static let spareNode = "h4-spare"
    /// The UDP heartbeat port of the first VM's nodes (the next VM's is one more), on their hosts' addresses.
    static let datagramPortBase = 7401
    static let operatorNode = "operator"

    private let options: Options
    private let stop: StopSignal
    private let say: @Sendable (String) -> Void
    private let tag: String
    private let directory: String
    private var cluster: EtcdCluster?
    private var hosts: FleetHosts?
    private var pairs: [Pair] = []
    private var agents: [String: Process] = [:]
    private var clients: [CounterClient] = []
    private var sampler: JoinableThread?
    private let sampling = Latch()
    private let lock = NSLock()
    private var samples = 0
    private var doubled = 0

    public init(options: Options, stop: StopSignal, say: @escaping @Sendable (String) -> Void) {
        self.options = options
        self.stop = stop
        self.say = say
        tag = "f\(getpid() % 100_000)"
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-fleet-\(tag)").path
    }

    /// Runs the scenario and removes everything it made.
    public func run() throws -> FleetReport {
        let missing = VMDemo.missingPrerequisites(guestDirectory: options.guestDirectory)
            + (EtcdProcess.isInstalled ? [] : ["\(EtcdProcess.executable) (Debian's etcd-server)"])
        guard missing.isEmpty else { throw HarnessError("the fleet demo needs:\n  - " + missing.joined(separator: "\n  - ")) }
        defer { cleanUp() }
        var report = FleetReport()
        try prepare()
        let registry = FleetRegistry(endpoints: cluster!.endpoints, tls: cluster!.clientTLS(node: Self.operatorNode))
        report.vms = pairs.map(\.vm)
        report.hosts = Dictionary(uniqueKeysWithValues: hosts!.hosts.map { ($0, hosts!.address(of: $0)) })
        try startHosts(registry: registry)
        startSampling(registry)

        say("[3/7] waiting for each backup to pass a scheduled drill (drill.every = \(options.drillEvery))")
        var drilled: Set<String> = []
        try waitFor("a passed drill on every backup", timeout: .seconds(180)) {
            drilled.formUnion(FleetReport.vmsWithPassedDrill((try? registry.records()) ?? []))
            return drilled.count == pairs.count
        }
        report.drillsPassed = drilled.count

        say("[4/7] (a) killing one etcd member (the leader): nothing may change for 5 s")
        let before = try registry.records()
        let leader = cluster!.leader() ?? 0
        cluster!.kill(member: leader)
        for _ in 0..<25 {
            if stop.wait(timeout: .milliseconds(200)) { throw HarnessError("interrupted") }
            guard let claims = try? registry.claims(), let records = try? registry.records() else { continue }
            guard claims.isEmpty else { throw HarnessError("(a) a claim appeared after one etcd member was killed: \(claims.keys.sorted())") }
            for pair in pairs {
                let primary = records.first { $0.vm == pair.vm && $0.role == .primary }
                let earlier = before.first { $0.vm == pair.vm && $0.role == .primary }
                guard primary?.node == earlier?.node, primary?.peer == earlier?.peer, primary?.state == "protecting" else {
                    throw HarnessError("(a) \(pair.vm) changed after one etcd member was killed: \(String(describing: primary))")
                }
            }
        }
        try cluster!.restart(member: leader)
        report.events.append("(a) etcd member \(leader) (the leader) killed: no role, peer or claim changed; restarted")

        // (b) A backup host: its primary must protect to the spare.
        let vmB = pairs[1]
        say("[5/7] (b) killing host \(vmB.backupHost), \(vmB.vm)'s backup (every process on it, SIGKILL): the spare must claim \(vmB.vm)")
        let backupKilledAt = ContinuousClock.now
        let killedOnB = killHost(vmB.backupHost)
        try waitFor("the spare to protect \(vmB.vm)", timeout: .seconds(240)) { protectedBySpare(vmB.vm, registry: registry) }
        let backupReprotected = Self.milliseconds(since: backupKilledAt)
        try requireDatagramsToSpare(vmB.vm, config: vmB.configs.primary)
        report.reprotectedMs["backup_host_\(vmB.backupHost)_killed"] = backupReprotected
        report.events.append("(b) \(vmB.backupHost) killed (\(killedOnB) processes): \(Self.spareNode) claimed \(vmB.vm), protecting again after \(backupReprotected) ms, its heartbeat datagrams to the spare")
        say("      \(vmB.vm) protected by \(Self.spareNode) \(backupReprotected) ms after the kill")

        // (c) A primary host: its backup takes over, then the spare protects the survivor.
        let vmA = pairs[0]
        say("[6/7] (c) killing host \(vmA.primaryHost), \(vmA.vm)'s primary (every process on it, SIGKILL): \(vmA.backupNode) must take over, "
            + "then the spare protect it")
        let primaryKilledAt = ContinuousClock.now
        let killedOnA = killHost(vmA.primaryHost)
        try waitFor("\(vmA.backupNode) to run \(vmA.vm)", timeout: .seconds(60)) {
            (try? registry.records())?.contains { $0.vm == vmA.vm && $0.node == vmA.backupNode && $0.role == .primary } ?? false
        }
        let tookOver = Self.milliseconds(since: primaryKilledAt)
        try waitFor("the spare to protect \(vmA.vm)", timeout: .seconds(240)) { protectedBySpare(vmA.vm, registry: registry) }
        let primaryReprotected = Self.milliseconds(since: primaryKilledAt)
        try requireDatagramsToSpare(vmA.vm, config: vmA.configs.backup)
        report.reprotectedMs["primary_host_\(vmA.primaryHost)_killed"] = primaryReprotected
        report.events.append("(c) \(vmA.primaryHost) killed (\(killedOnA) processes): \(vmA.backupNode) ran \(vmA.vm) after \(tookOver) ms, "
                             + "protected by \(Self.spareNode) after \(primaryReprotected) ms, its heartbeat datagrams to the spare")
        say("      \(vmA.backupNode) took over after \(tookOver) ms; protected by \(Self.spareNode) \(primaryReprotected) ms after the kill")

        // (d) The lost hosts come back with their old configurations: they must stand down.
        say("[7/7] (d) restarting \(vmB.backupHost) and \(vmA.primaryHost) with their old configurations: both must stand down")
        let returning = [(vmB, vmB.backupNode), (vmA, vmA.primaryNode)]
        for (pair, node) in returning { try startAgent(node, config: node == pair.primaryNode ? pair.configs.primary : pair.configs.backup, pair: pair, log: "\(node)-2.log") }
        for (pair, node) in returning {
            try waitFor("\(node) to stand down", timeout: .seconds(30)) {
                (try? registry.records())?.contains { $0.vm == pair.vm && $0.node == node && $0.state == "stood-down" } ?? false
            }
        }
        let claims = try registry.claims()
        guard Set(claims.keys) == Set(pairs.map(\.vm)), claims.values.allSatisfy({ $0.claim.node == Self.spareNode }) else {
            throw HarnessError("(d) the claims are not exactly the spare's, one per VM: \(claims.mapValues(\.claim.node))")
        }
        for pair in pairs where !protectedBySpare(pair.vm, registry: registry) {
            throw HarnessError("(d) \(pair.vm) is no longer protected by the spare")
        }
        report.events.append("(d) \(vmB.backupHost) and \(vmA.primaryHost) restarted: both stood down, both VMs stay with \(Self.spareNode)")

        // The clients must still be answered, and must have lost nothing on the way.
        for (pair, client) in zip(pairs, clients) {
            let count = client.history.count
            try waitFor("\(pair.vm)'s client to be answered again", timeout: .seconds(30)) { client.history.count > count + 5 }
        }
        stopSampling()
        clients.forEach { $0.stop() }
        report.lostAcknowledgedOutput = clients.map { FleetReport.lostAcknowledgedOutput($0.history.map(\.value)) }.reduce(0, +)
        (report.registrySamples, report.twoActiveCopies) = lock.withLock { (samples, doubled) }
        report.ok = report.lostAcknowledgedOutput == 0 && report.twoActiveCopies == 0 && report.drillsPassed == pairs.count
        report.message = report.ok ? "every VM protected again after each host failure, with nothing lost and never two primaries"
            : report.lostAcknowledgedOutput > 0 ? "the clients lost \(report.lostAcknowledgedOutput) values they had received"
            : report.twoActiveCopies > 0 ? "two nodes reported one VM as primary in \(report.twoActiveCopies) samples" : "not every VM passed a drill"
        return report
    }

    /// Certificates, the etcd cluster, the guest, and per VM its disks, network and configurations.
    private func prepare() throws {
        say("[1/7] preparing in \(directory): certificates, hosts h1..h4 (network namespaces), a three-member etcd cluster, "
            + "the counter guest, two VMs' disks and networks")
        let guest = try CounterGuestImage.build(guestDirectory: options.guestDirectory)
        try VMDemo.buildPreloadLibraryIfMissing(executable: options.executable, guestDirectory: options.guestDirectory, say: say)
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let layout = [("a", "h1", "h2"), ("b", "h2", "h3")]
        let nodes = layout.flatMap { ["\($0.1)-vm\($0.0)\(tag)", "\($0.2)-vm\($0.0)\(tag)"] } + [Self.spareNode, Self.operatorNode, EtcdProcess.serverName]
        try HostCommand.run([options.executable, "certs", "init", "--dir", "\(directory)/certs", "--nodes", nodes.joined(separator: ",")])
        let hosts = try FleetHosts(hosts: ["h1", "h2", "h3", "h4"], tag: tag)
        self.hosts = hosts
        cluster = try EtcdCluster(size: 3, host: hosts.serviceAddress, certificates: "\(directory)/certs")
        let endpoints = cluster!.endpoints.map { "\"\($0.host):\($0.port)\"" }.joined(separator: ", ")
        // Per VM the backup node's listening port and the primary node's (either can be the backup).
        let ports = try EtcdProcess.freeLoopbackPorts(2 * layout.count + 1)
        for (index, (letter, primaryHost, backupHost)) in layout.enumerated() {
            let vm = "vm\(letter)\(tag)"
            let vmDirectory = "\(directory)/\(vm)"
            try FileManager.default.createDirectory(atPath: vmDirectory, withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: "\(vmDirectory)/certs", withDestinationPath: "\(directory)/certs")
            try HostCommand.run(["truncate", "-s", "64M", "\(vmDirectory)/primary-disk.img", "\(vmDirectory)/backup-disk.img"])
            try HostCommand.run(["mkfs.ext4", "-q", "-F", "\(vmDirectory)/primary-disk.img"])
            let network = try PairNetwork(hostNamespaces: [primaryHost, backupHost].map(hosts.namespace(of:)), tag: "\(tag)\(letter)")
            // Until the pair exists, cleanUp does not know the network.
            var paired = false
            defer { if !paired { network.remove() } }
            // The witness on the same cluster fences failover; its 3 s lease rides through an etcd leader's election.
            let fleet = { (host: String) in
                "[fleet]\nendpoints = [\(endpoints)]\nhost = \"\(host)\"\npublish_ms = 200\nlease_ttl_s = 3\n"
                    + "[witness]\nendpoints = [\(endpoints)]\nlease_ttl_s = 3\n[failover]\ngrace_ms = 200\nreconnect_ms = 200\n"
            }
            let primaryListen = "\(hosts.address(of: primaryHost)):\(ports[2 * index + 1])"
            // The second heartbeat path, over UDP between the two hosts' addresses (a spare's node gets one too: spare.udp_host).
            let datagrams = { (from: String, to: String) in
                "[heartbeat]\nudp_listen = \"\(hosts.address(of: from)):\(Self.datagramPortBase + index)\"\n"
                    + "udp_peer = \"\(hosts.address(of: to)):\(Self.datagramPortBase + index)\"\n"
            }
            let configs = try AgentPair.writeConfigs(
                in: vmDirectory, port: ports[2 * index], vm: vm, guest: guest,
                cmdline: "understudy.run=counter-service \(network.guestCommandLine)", replicaDirectory: "/dev/shm/understudy-\(vm)-b",
                backupHost: hosts.address(of: backupHost),
                disks: ("\(vmDirectory)/primary-disk.img", "\(vmDirectory)/backup-disk.img"), taps: (network.taps[0], network.taps[1]),
                backupPeerAddress: primaryListen,
                primaryExtra: "[backup]\nlisten = \"\(primaryListen)\"\nreplica_dir = \"/dev/shm/understudy-\(vm)-p\"\n" + fleet(primaryHost)
                    + datagrams(primaryHost, backupHost),
                backupExtra: fleet(backupHost) + datagrams(backupHost, primaryHost) + """
                    [drill]
                    probe = "tcp:\(network.guestAddress):\(VMDemo.servicePort)"
                    sandbox_address = "\(network.clientAddress)/\(network.prefixLength)"
                    every = "\(options.drillEvery)"
                    slot_dir = "\(directory)/drill-slots-\(backupHost)"
                    """,
                names: ("\(primaryHost)-\(vm)", "\(backupHost)-\(vm)"))
            pairs.append(Pair(vm: vm, primaryHost: primaryHost, backupHost: backupHost, directory: vmDirectory, network: network, configs: configs))
            paired = true
        }
        try Self.linkBootDirectory("\(directory)/boot", guest: guest)
        try Self.writeSpareConfiguration(to: "\(directory)/spare.toml", node: Self.spareNode, certificates: "\(directory)/certs",
                                         endpoints: cluster!.endpoints.map(\.description), host: "h4", listenHost: hosts.address(of: "h4"),
                                         datagramHost: hosts.address(of: "h4"),
                                         portBase: ports[2 * layout.count],
                                         replicaDirectory: "/dev/shm/understudy-\(tag)-spare", stateDirectory: "\(directory)/spare-state",
                                         bootDirectory: "\(directory)/boot", tapPrefix: "u\(tag)", maxBackups: 2)
    }

    /// A spare host's boot directory: the guest's kernel and initrd by file name, as a spare finds them.
    public static func linkBootDirectory(_ boot: String, guest: (kernel: String, initrd: String)) throws {
        try FileManager.default.createDirectory(atPath: boot, withIntermediateDirectories: true)
        for file in [guest.kernel, guest.initrd] {
            try FileManager.default.createSymbolicLink(atPath: "\(boot)/\(URL(fileURLWithPath: file).lastPathComponent)", withDestinationPath: file)
        }
    }

    /// A spare's configuration as the tests and the demo run one: listening on `listenHost` (and
    /// for heartbeat datagrams on `datagramHost`, when given), with the short lease and claim
    /// delay (2 s each) that keep a run short.
    public static func writeSpareConfiguration(to path: String, node: String, certificates: String, endpoints: [String], host: String,
                                               listenHost: String = "127.0.0.1", datagramHost: String? = nil, portBase: UInt16, replicaDirectory: String, stateDirectory: String, bootDirectory: String,
                                               tapPrefix: String, maxBackups: Int) throws {
        try """
            [node]
            name = "\(node)"
            certificates = "\(certificates)"
            [fleet]
            endpoints = [\(endpoints.map { "\"\($0)\"" }.joined(separator: ", "))]
            host = "\(host)"
            publish_ms = 200
            lease_ttl_s = 3
            reprotect_after_s = 2
            max_backups = \(maxBackups)
            [spare]
            listen_host = "\(listenHost)"
            port_base = \(portBase)
            replica_dir = "\(replicaDirectory)"
            state_dir = "\(stateDirectory)"
            boot_dir = "\(bootDirectory)"
            tap_prefix = "\(tapPrefix)"

            """.appending(datagramHost.map { "udp_host = \"\($0)\"\n" } ?? "").write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// Whether `vm`'s one primary reports protecting to the spare.
    private func protectedBySpare(_ vm: String, registry: FleetRegistry) -> Bool {
        let primaries = ((try? registry.records()) ?? []).filter { $0.vm == vm && $0.role == .primary }
        return primaries.count == 1 && primaries[0].peer == Self.spareNode && primaries[0].state == "protecting"
    }

    /// Requires that `vm`'s primary (the node of `config`) sends its heartbeat datagrams to the
    /// spare: the second path followed the claim, with no hand edit.
    private func requireDatagramsToSpare(_ vm: String, config: String) throws {
        var datagrams: String?
        try? waitFor("\(vm)'s primary to send its heartbeat datagrams to the spare", timeout: .seconds(10)) {
            let output = try? HostCommand.run([options.executable, "status", "--config", config, "--json"])
            datagrams = (try? JSONDecoder().decode(AgentStatus.self, from: Data((output ?? "").utf8)))?.primary?.heartbeatDatagrams
            return datagrams?.hasSuffix("(\(Self.spareNode))") == true
        }
        guard datagrams?.hasSuffix("(\(Self.spareNode))") == true else {
            throw HarnessError("\(vm)'s primary protects to the spare but its heartbeat datagrams go \(datagrams ?? "nowhere (no status)")")
        }
    }

    private static func milliseconds(since start: ContinuousClock.Instant) -> Int {
        Int(((ContinuousClock.now - start).seconds * 1000).rounded())
    }

    /// Starts `node` of `pair` as the operator's service manager does: `understudy run`, which
    /// picks its role from its role record (a node that died running the VM starts as the backup).
    private func startAgent(_ node: String, config: String, pair: Pair, log: String) throws {
        let host = node == pair.primaryNode ? pair.primaryHost : pair.backupHost
        agents[node] = try AgentPair.start(options.executable, ["run", "--config", config, "--log-level", "info"], log: "\(pair.directory)/\(log)",
                                           namespace: hosts!.namespace(of: host))
    }

    /// The backups, the primaries and the spare; returns once both VMs are protected and their
    /// clients answered.
    private func startHosts(registry: FleetRegistry) throws {
        say("[2/7] starting hosts h1..h4: \(pairs.map { "\($0.vm) primary on \($0.primaryHost), backup on \($0.backupHost)" }.joined(separator: "; ")); h4 a spare")
        for pair in pairs {
            try startAgent(pair.backupNode, config: pair.configs.backup, pair: pair, log: "backup.log")
            try startAgent(pair.primaryNode, config: pair.configs.primary, pair: pair, log: "primary.log")
        }
        agents[Self.spareNode] = try AgentPair.start(options.executable, ["spare", "--config", "\(directory)/spare.toml", "--log-level", "info"],
                                                     log: "\(directory)/spare.log", namespace: hosts!.namespace(of: "h4"))
        let started = ContinuousClock.now
        try waitFor("both VMs to be protected", timeout: .seconds(240)) {
            let records = (try? registry.records()) ?? []
            return pairs.allSatisfy { pair in
                records.contains { $0.vm == pair.vm && $0.node == pair.primaryNode && $0.state == "protecting" && $0.peer == pair.backupNode }
            }
        }
        say(String(format: "      both protected after %.1f s; a counter client per VM asks its guest, back to back", (ContinuousClock.now - started).seconds))
        for pair in pairs {
            let client = CounterClient(network: pair.network, port: VMDemo.servicePort)
            clients.append(client)
            client.start()
        }
        for (pair, client) in zip(pairs, clients) {
            try waitFor("\(pair.vm)'s counter service to answer", timeout: .seconds(60)) { client.history.count >= 5 }
        }
    }

    /// SIGKILLs everything running on `host` (its agents and their QEMU), as the host losing
    /// power; returns how many processes that was.
    private func killHost(_ host: String) -> Int {
        let killed = hosts!.kill(host: host)
        for node in pairs.flatMap({ [($0.primaryNode, $0.primaryHost), ($0.backupNode, $0.backupHost)] }) where node.1 == host {
            agents.removeValue(forKey: node.0)?.waitUntilExit()
        }
        return killed
    }

    /// Reads the registry every 200 ms and counts the samples in which one VM has two primaries.
    private func startSampling(_ registry: FleetRegistry) {
        sampler = JoinableThread(name: "fleet-sampler") { [self] in
            repeat {
                guard let records = try? registry.records() else { continue }
                // Fresh: republished within five publish periods (200 ms each).
                let twice = FleetReport.vmsWithTwoPrimaries(records, now: Date().timeIntervalSince1970, freshWithin: 1)
                lock.withLock {
                    samples += 1
                    if !twice.isEmpty { doubled += 1 }
                }
            } while !sampling.wait(timeout: .milliseconds(200))
        }
    }

    private func stopSampling() {
        sampling.trigger()
        sampler?.join()
        sampler = nil
    }

    /// Polls `condition` every 100 ms; throws on SIGINT/SIGTERM or after `timeout`.
    private func waitFor(_ what: String, timeout: Duration, _ condition: () -> Bool) throws {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            if stop.wait(timeout: .milliseconds(100)) { throw HarnessError("interrupted") }
            guard ContinuousClock.now < deadline else { throw HarnessError("timed out after \(timeout) waiting for \(what)") }
        }
    }

    /// The drill namespaces the agents' logs name: a host killed during a drill leaves its
    /// sandbox behind (another suite's drills are not named here, and stay).
    private func removeDrillSandboxes() {
        let logs = FileManager.default.enumerator(atPath: directory)?.compactMap { $0 as? String }.filter { $0.hasSuffix(".log") } ?? []
        let sandboxes = logs.reduce(into: Set<String>()) { $0.formUnion(DrillSandboxLog.sandboxes(inLog: "\(directory)/\($1)")) }
        for sandbox in sandboxes where FileManager.default.fileExists(atPath: "/var/run/netns/\(sandbox)") {
            _ = try? HostCommand.run(["ip", "netns", "delete", sandbox])
        }
    }

    /// Stops the clients, the spare first (it stops its backup nodes and their QEMU), then the
    /// hosts; kills any QEMU left; removes the networks, etcd, shared-memory files and the directory.
    private func cleanUp() {
        stopSampling()
        clients.forEach { $0.stop() }
        if let spare = agents.removeValue(forKey: Self.spareNode) { AgentPair.stop([spare], grace: .seconds(20), directory: directory) }
        for pair in pairs {
            let own = [pair.primaryNode, pair.backupNode].compactMap { agents.removeValue(forKey: $0) }
            AgentPair.stop(own, grace: .seconds(20), directory: pair.directory)
        }
        pairs.forEach { $0.network.remove() }
        hosts?.remove()
        removeDrillSandboxes()
        cluster?.stop()
        for file in (try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? [] where file.contains(tag) {
            try? FileManager.default.removeItem(atPath: "/dev/shm/\(file)")
        }
        if options.keep {
            say("kept \(directory) (configurations, agent logs, disks)")
        } else {
            try? FileManager.default.removeItem(atPath: directory)
        }
    }
}
