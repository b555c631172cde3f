import Foundation
#if canImport(Glibc)
import Glibc
#endif
import UnderstudyAgent
import UnderstudyQEMU
import UnderstudySystem

/// The end-to-end consistency check shared by the VM test suites and `understudy-bench --soak`:
/// a TCP counter service in the test guest (counter in memory, each value appended with fsync to
/// a file on the replicated ext4 disk), a client asking back to back over one TCP connection from
/// its own network namespace, and an event (`Scenario`) that moves the VM or takes a node away.
/// Afterwards the client's replies are checked against the surviving copy's counter and disk.
///
/// One network, certificates and a workspace are shared by the trials; each trial gets fresh
/// disks, replica, ports, processes and (when witnessed) its own etcd, and removes them again.
public final class ConsistencyHarness {
    let directory: String
    let network: PairNetwork
    let vm: String
    /// Where the logs of a trial with violations or problems are copied.
    let keptLogsDirectory: String
    /// The random moments of the events and the ports: seeded, so a run can be repeated.
    private var random: SplitMix64
    private var processes: [Process] = []
    let shape: GuestShape

    /// The VM the trials protect, beyond the counter service itself.
    public struct GuestShape: Sendable {
        /// 1: the counter's ext4 disk only. 2: a first disk (ext4, unused by the service) before
        /// it, so the counter's writes travel at the second disk's place in the disk space.
        public var disks = 1
        public var machine = "pc"
        public var vcpus = 1
        /// OVMF instead of SeaBIOS, its variable store replicated after the disks.
        public var uefi = false
        /// A virtio-rng device.
        public var randomNumberGenerator = false
        /// NICs, each through its own gate; the counter service answers on the first, the others
        /// sit on the same LAN unconfigured (they still hold and release their frames).
        public var nics = 1

        public init(disks: Int = 1, machine: String = "pc", vcpus: Int = 1, uefi: Bool = false, randomNumberGenerator: Bool = false,
                    nics: Int = 1) {
            self.nics = nics
            self.disks = disks
            self.machine = machine
            self.vcpus = vcpus
            self.uefi = uefi
            self.randomNumberGenerator = randomNumberGenerator
        }
    }

    /// - Parameters:
    ///   - seed: seeds the moments of the events and the ports of the trials.
    ///   - keptLogs: where the logs of a trial with violations or problems are copied.
    ///   - shape: the VM's disks, machine and vCPUs.
    public init(seed: UInt64 = .random(in: .min ... .max),
                keptLogs: String = "\(FileManager.default.temporaryDirectory.path)/understudy-failed-trials",
                shape: GuestShape = GuestShape()) throws {
        precondition((1...2).contains(shape.disks), "the counter trials run with one or two disks")
        random = SplitMix64(seed: seed)
        self.shape = shape
        keptLogsDirectory = keptLogs
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-consistency-\(UUID().uuidString.prefix(8))").path
        vm = "cs\(UUID().uuidString.prefix(6).lowercased())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // The primary's and the backup's TAP of NIC n are taps[2n] and taps[2n + 1].
        network = try PairNetwork(tapCount: 2 * shape.nics)
        // The witness's certificate comes from the pair's CA, as in production.
        let certs = try runCLI(["certs", "init", "--dir", "\(directory)/certs", "--nodes", "primary,backup,\(EtcdProcess.serverName)"])
        guard certs.status == 0 else { throw HarnessError("certs init: \(certs.stderr)") }
    }

    /// Stops whatever still runs and removes the network, the workspace and the shared memory files.
    public func remove() {
        killAll()
        network.remove()
        try? FileManager.default.removeItem(atPath: directory)
        removeSharedMemoryFiles()
    }

    private func killAll() {
        AgentPair.stop(processes, grace: .zero, directory: directory)
        processes.removeAll()
    }

    /// A failed trial's logs outlive the harness's workspace, for the reader of the failure.
    private func keep(_ logs: String) -> String {
        let kept = "\(keptLogsDirectory)/\(vm)-\((logs as NSString).lastPathComponent)"
        try? FileManager.default.createDirectory(atPath: keptLogsDirectory, withIntermediateDirectories: true)
        try? FileManager.default.copyItem(atPath: logs, toPath: kept)
        print("logs of the failed trial: \(kept)")
        return kept
    }

    /// `understudy` of this build with `arguments`.
    private func runCLI(_ arguments: [String]) throws -> HostCommand.Output {
        try HostCommand.execute(productsDirectory().appendingPathComponent("understudy").path, arguments)
    }

    /// The node's status as JSON.
    private func status(_ config: String) throws -> AgentStatus {
        let reply = try runCLI(["status", "--config", config, "--json"])
        return try JSONDecoder().decode(AgentStatus.self, from: Data(reply.stdout.utf8))
    }

    /// Waits until `predicate` holds for the node's status; nil on time-out.
    private func waitForStatus(_ config: String, timeout: Duration, _ predicate: (AgentStatus) -> Bool) -> AgentStatus? {
        let deadline = ContinuousClock.now + timeout
        var last: AgentStatus?
        while ContinuousClock.now < deadline {
            if let status = try? self.status(config) {
                last = status
                if predicate(status) { return status }
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
        print("status never matched: \(last.map { "\($0)" } ?? "no status")")
        return nil
    }

    /// The partition: both the replication link and the primary's way to the witness go silent
    /// while the primary runs on. The backup must take over only with the lease, the primary must
    /// send nothing from then on, and after the partition heals it must be fenced into a backup.
    private func partition(_ link: LinkEmulator, _ witness: LinkEmulator, client: CounterClient, configs: (primary: String, backup: String),
                           outcome: inout Outcome) -> String? {
        guard waitForStatus(configs.primary, timeout: .seconds(60), { $0.primary?.state == .protecting }) != nil else {
            return "the primary never protected the VM"
        }
        Thread.sleep(forTimeInterval: Double.random(in: 0...1, using: &random))
        link.cut(.silence)
        witness.cut(.silence)
        guard waitForStatus(configs.backup, timeout: .seconds(30), { $0.role == .primary }) != nil else {
            return "the backup never took over after the primary's lease expired"
        }
        let sentAtTakeover = (try? status(configs.primary))?.primary?.outputReleasedFrames
        guard client.waitForReplies(outcome.repliesBefore + 10, timeout: .seconds(40)) else {
            return "the client got no replies from the new primary: \(client.errors)"
        }
        // Long enough for the old guest's TCP to retransmit what it had sent: none of it may leave.
        Thread.sleep(forTimeInterval: 2)
        let primary = (try? status(configs.primary))?.primary
        if let sent = primary?.outputReleasedFrames, let sentAtTakeover, sent != sentAtTakeover {
            outcome.twoActiveCopies = true
            return "two active copies: the partitioned primary sent \(sent - sentAtTakeover) frames after the backup took over (\(primary!))"
        }
        if let mode = primary?.outputMode, !mode.hasPrefix("output commit") {
            outcome.twoActiveCopies = true
            return "two active copies: the partitioned primary lets output pass while the backup is active (\(primary!))"
        }
        link.restore()
        witness.restore()
        guard waitForStatus(configs.primary, timeout: .seconds(30), { $0.role == .backup }) != nil else {
            return "after the partition healed, the old primary was not fenced into a backup"
        }
        guard waitForStatus(configs.backup, timeout: .seconds(90), { $0.primary?.state == .protecting }) != nil else {
            return "the new primary did not protect the VM to the fenced node"
        }
        return nil
    }

    /// The stall: the replication link is cut, the primary goes unprotected, then its agent stops
    /// while QEMU runs on and the backup takes over. After the agent resumes, no frame may reach
    /// its TAP: its lease expired while it was stopped.
    private func stallWhileUnprotected(_ link: LinkEmulator, agent: Process, configs: (primary: String, backup: String),
                                       outcome: inout Outcome) -> String? {
        guard waitForStatus(configs.primary, timeout: .seconds(60), { $0.primary?.state == .protecting }) != nil else {
            return "the primary never protected the VM"
        }
        link.cut(.silence)
        guard waitForStatus(configs.primary, timeout: .seconds(10), {
            $0.primary?.state == .unprotected && ($0.detail ?? "").contains("policy")
        }) != nil else {
            return "with the link cut, the primary did not run unprotected after its grace period"
        }
        kill(agent.processIdentifier, SIGSTOP)
        Thread.sleep(forTimeInterval: 0.05)
        let atStall = framesWrittenToPrimaryTAP()
        guard waitForStatus(configs.backup, timeout: .seconds(30), { $0.role == .primary }) != nil else {
            kill(agent.processIdentifier, SIGCONT)
            return "the backup never took over after the stalled primary's lease expired"
        }
        // Meanwhile the old guest goes on sending (retransmissions) into the stopped gate's socket.
        Thread.sleep(forTimeInterval: 1)
        kill(agent.processIdentifier, SIGCONT)
        Thread.sleep(forTimeInterval: 2)
        let afterResume = framesWrittenToPrimaryTAP()
        let primary = (try? status(configs.primary)).map { "\($0)" } ?? "no status"
        guard let atStall, let afterResume else { return "cannot read the statistics of \(network.taps[0])" }
        outcome.summary = "the TAP had \(atStall) frames from the gate at the stall, \(afterResume) two seconds after the resume"
        if afterResume != atStall {
            outcome.twoActiveCopies = true
            return "two active copies: the stalled primary wrote \(afterResume - atStall) frames to its TAP after it resumed (\(primary))"
        }
        guard waitForStatus(configs.primary, timeout: .seconds(30), { $0.role == .backup }) != nil else {
            return "the stalled primary was not fenced into a backup after it resumed"
        }
        return nil
    }

    /// What the primary's gate wrote to its TAP, counted by the kernel (the TAP's receive side):
    /// readable while the agent is stopped, once the write in progress at a SIGSTOP has finished.
    private func framesWrittenToPrimaryTAP() -> Int? {
        let counter = "/sys/class/net/\(network.taps[0])/statistics/rx_packets"
        return Int((try? String(contentsOfFile: counter, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "")
    }

    /// The frozen host, once agent and QEMU stopped together: the backup takes over once the lease
    /// expired, then both continue. From the takeover on, no frame may reach the old primary's
    /// TAP (its lease is gone the moment it resumes); `finish` then checks it became the backup.
    private func continueAfterTakeover(agent: Process, qemu: Int32, configs: (primary: String, backup: String), outcome: inout Outcome) -> String? {
        defer {
            kill(qemu, SIGCONT)
            kill(agent.processIdentifier, SIGCONT)
        }
        Thread.sleep(forTimeInterval: 0.05)
        let atStop = framesWrittenToPrimaryTAP()
        guard waitForStatus(configs.backup, timeout: .seconds(30), { $0.role == .primary }) != nil else {
            return "the backup never took over after the stopped primary's lease expired"
        }
        kill(qemu, SIGCONT)
        kill(agent.processIdentifier, SIGCONT)
        // The resumed guest retransmits what it had sent; its agent must let none of it out.
        Thread.sleep(forTimeInterval: 2)
        let afterResume = framesWrittenToPrimaryTAP()
        guard let atStop, let afterResume else { return "cannot read the statistics of \(network.taps[0])" }
        if afterResume != atStop {
            outcome.twoActiveCopies = true
            let primary = (try? status(configs.primary)).map { "\($0)" } ?? "no status"
            return "two active copies: the stopped primary wrote \(afterResume - atStop) frames to its TAP after it continued (\(primary))"
        }
        return nil
    }

    /// The link scenarios: silence the replication link for about 3 s. The second heartbeat path
    /// keeps the backup from failing over; the primary, after its grace period, serves
    /// unprotected (the client keeps getting replies) or, with `safety`, keeps holding (the
    /// client gets nothing); once the link is back it is protected again.
    private func cutAndRestore(_ relay: LinkEmulator, client: CounterClient, configs: (primary: String, backup: String), safety: Bool) -> String? {
        guard waitForStatus(configs.primary, timeout: .seconds(60), { $0.primary?.state == .protecting }) != nil else {
            return "the primary never protected the VM"
        }
        relay.cut(.silence)
        let expected: PrimaryStatus.Phase = safety ? .holding : .unprotected
        guard waitForStatus(configs.primary, timeout: .seconds(10), {
            $0.primary?.state == expected && ($0.detail ?? "").contains("policy")
        }) != nil else {
            return "with the link cut, the primary was not \(expected) after its grace period"
        }
        let during = client.history.count
        Thread.sleep(forTimeInterval: 2)
        if safety {
            if client.history.count > during { return "with the safety policy, the client got replies while no backup acknowledged" }
        } else if client.history.count < during + 5 {
            return "the client got no replies while the primary ran unprotected"
        }
        if let backup = try? status(configs.backup), backup.role != .backup {
            return "the backup failed over although the datagram path showed the primary alive: \(backup)"
        }
        relay.restore()
        guard waitForStatus(configs.primary, timeout: .seconds(60), { $0.primary?.state == .protecting && ($0.primary?.sessions ?? 0) >= 2 }) != nil else {
            return "the primary was not protected again after the link came back"
        }
        // Let the new session commit a few checkpoints before the kill.
        Thread.sleep(forTimeInterval: 1)
        return nil
    }

    /// The killed primary leaves its RAM and device-state files, as a crashed host would.
    private func removeSharedMemoryFiles() {
        try? FileManager.default.removeItem(atPath: "/dev/shm/understudy-consistency-\(vm)")
        try? FileManager.default.removeItem(atPath: "/dev/shm/understudy-consistency-\(vm)-p")
        for file in (try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? [] where file.hasPrefix("understudy-\(vm)-") {
            try? FileManager.default.removeItem(atPath: "/dev/shm/\(file)")
        }
    }

    private func start(_ arguments: [String], log: String) throws -> Process {
        let process = try AgentPair.start(productsDirectory().appendingPathComponent("understudy").path, arguments, log: log)
        processes.append(process)
        return process
    }

    /// One trial: protect, let the client run for a random while, disturb the pair as `scenario`
    /// says (by default: kill the primary and activate the backup), let the client run on, then
    /// check what the client saw against the surviving copy's memory counter and disk file, and
    /// fsck the disk. `buffering` false turns output commit off (the check must then fail).
    public func run(trial: Int, buffering: Bool, scenario: Scenario = .killThenActivate) throws -> Outcome {
        let logs = "\(directory)/trial-\(trial)"
        var outcome = try run(logs: logs, buffering: buffering, scenario: scenario)
        // Without output buffering violations are the expected outcome, not a failure to keep logs of.
        if buffering && (!outcome.violations.isEmpty || !outcome.problems.isEmpty) { outcome.keptLogs = keep(logs) }
        try? FileManager.default.removeItem(atPath: logs)
        return outcome
    }

    private func run(logs: String, buffering: Bool, scenario: Scenario) throws -> Outcome {
        defer {
            killAll()
            removeSharedMemoryFiles()
            for run in ["run-primary", "run-backup"] { try? FileManager.default.removeItem(atPath: "\(directory)/\(run)") }
        }
        var outcome = Outcome()
        // The counter's disk last: with two disks its writes sit past the first disk's end.
        let disks = (shape.disks == 2 ? ["system"] : []) + ["disk"]
        for disk in disks {
            try HostCommand.run(["sh", "-c", "rm -f \(directory)/primary-\(disk).img \(directory)/backup-\(disk).img && truncate -s 64M \(directory)/primary-\(disk).img "
                      + "&& mkfs.ext4 -q -F \(directory)/primary-\(disk).img && truncate -s 64M \(directory)/backup-\(disk).img"])
        }
        if shape.uefi {
            // The primary's store from the template, the backup's an empty file of its size.
            try HostCommand.run(["sh", "-c", "cp \(VMDescription.uefiVariablesTemplate) \(directory)/primary-vars.fd "
                      + "&& rm -f \(directory)/backup-vars.fd && truncate -s $(stat -c %s \(directory)/primary-vars.fd) \(directory)/backup-vars.fd"])
        }
        func vmExtra(_ node: String) -> String {
            (disks.count > 1 ? "disks = [" + disks.map { "\"\(directory)/\(node)-\($0).img\"" }.joined(separator: ", ") + "]\n" : "")
                + "machine = \"\(shape.machine)\"\nvcpus = \(shape.vcpus)\nrng = \(shape.randomNumberGenerator)\n"
                + (shape.uefi ? "firmware = \"uefi\"\nuefi_vars = \"\(directory)/\(node)-vars.fd\"\n" : "")
        }
        let port = LoopbackPorts.free(span: 4, using: &random)
        let witnessed = scenario.witnessed
        let etcd = witnessed ? try EtcdProcess(certificates: "\(directory)/certs") : nil
        defer { etcd?.stop() }
        // The primary reaches the witness through a relay, so that the partition can cut it off.
        let witnessRelay = try etcd.map { try LinkEmulator(target: ("127.0.0.1", $0.clientPort)) }
        defer { witnessRelay?.close() }
        let witness = { (port: UInt16) in "[witness]\nendpoints = [\"127.0.0.1:\(port)\"]\nlease_ttl_s = 1\n" }
        // The primary reaches the backup through a relay the cut scenario can silence.
        let cut = [.cutLinkThenKill, .cutLinkSafetyThenKill, .partitionWithWitness, .stallWhileUnprotected].contains(scenario)
        let relay = cut ? try LinkEmulator(target: ("127.0.0.1", port)) : nil
        defer { relay?.close() }
        let wan = scenario == .wanSynchronousKill
            ? try LinkEmulator(target: ("127.0.0.1", port), shape: LinkEmulator.Shape(oneWayDelay: .milliseconds(40), bytesPerSecond: 2_500_000))
            : nil
        defer { wan?.close() }
        let automatic = scenario != .killThenActivate
        // A 1 s timeout: these trials check what a failover preserves, and under the load of a
        // parallel test run a 200 ms timeout can mistake a starved primary for a dead one (the
        // failover bench measures the short timeouts on a quiet machine).
        let heartbeat = "[heartbeat]\ninterval_ms = 100\nmissed = 10\n"
            + (cut && !witnessed ? "udp_listen = \"127.0.0.1:%d\"\nudp_peer = \"127.0.0.1:%d\"\n" : "")
        let configs = try AgentPair.writeConfigs(
            in: directory, port: port, vm: vm, guest: TestGuest.image,
            cmdline: "understudy.run=counter-service understudy.disk=/dev/vd\(disks.count == 2 ? "b" : "a") \(network.guestCommandLine)",
            replicaDirectory: "/dev/shm/understudy-consistency-\(vm)",
            disks: disks.count == 1 ? ("\(directory)/primary-disk.img", "\(directory)/backup-disk.img") : nil, taps: (network.taps[0], network.taps[1]),
            moreTaps: (stride(from: 2, to: network.taps.count, by: 2).map { network.taps[$0] },
                       stride(from: 3, to: network.taps.count, by: 2).map { network.taps[$0] }),
            primaryNetwork: "unsafe_no_output_buffering = \(!buffering)",
            backupPeerAddress: "127.0.0.1:\(port + 1)",
            primaryExtra: """
                [backup]
                listen = "127.0.0.1:\(port + 1)"
                replica_dir = "/dev/shm/understudy-consistency-\(vm)-p"
                [failover]
                without_witness = \(!witnessed)
                grace_ms = 500
                reconnect_ms = 200
                policy = "\(scenario == .cutLinkSafetyThenKill ? "safety" : "availability")"
                \(String(format: heartbeat, Int(port) + 2, Int(port) + 3))
                \(witnessRelay.map { witness($0.port) } ?? "")
                """,
            backupExtra: automatic ? """
                [failover]
                without_witness = \(!witnessed)
                reconnect_ms = 200
                \(String(format: heartbeat, Int(port) + 3, Int(port) + 2))
                \(etcd.map { witness($0.clientPort) } ?? "")
                """ : "",
            vmExtra: (vmExtra("primary"), vmExtra("backup")),
            // OVMF stops with a general-protection fault in 128 MiB.
            memoryMiB: shape.uefi ? 256 : 128)
        if let linkPort = relay?.port ?? wan?.port {
            let text = try String(contentsOfFile: configs.primary, encoding: .utf8)
            try text.replacingOccurrences(of: "address = \"127.0.0.1:\(port)\"", with: "address = \"127.0.0.1:\(linkPort)\"")
                .write(toFile: configs.primary, atomically: true, encoding: .utf8)
        }
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)

        let backup = try start(["backup", "--config", configs.backup, "--log-level", "info"], log: "\(logs)/backup.log")
        Thread.sleep(forTimeInterval: 0.3)
        let primary = try start(["primary", "--config", configs.primary, "--log-level", "info"], log: "\(logs)/primary.log")
        let client = CounterClient(network: network)
        client.start()
        defer { client.stop() }
        guard client.waitForReplies(20, timeout: .seconds(120)) else {
            outcome.problems.append("the service never answered 20 requests: \(client.errors); see \(logs)")
            return outcome
        }
        if scenario == .stallWhileUnprotected, let relay {
            // The guest's state after the cut was never replicated (policy availability): only
            // the one-active-copy rule is checked, not the client's continuity.
            if let problem = stallWhileUnprotected(relay, agent: primary, configs: configs, outcome: &outcome) {
                outcome.violations.append("\(problem); see \(logs)")
            }
            return outcome
        }
        if let relay, let witnessRelay {
            let before = client.history
            outcome.repliesBefore = before.count
            let cutAt = ContinuousClock.now
            if let problem = partition(relay, witnessRelay, client: client, configs: configs, outcome: &outcome) {
                outcome.violations.append("\(problem); see \(logs)")
                return outcome
            }
            outcome = try finish(outcome, client: client, before: before, failedAt: cutAt, scenario: scenario, configs: configs, logs: logs)
            return outcome
        }
        if let relay {
            if let problem = cutAndRestore(relay, client: client, configs: configs, safety: scenario == .cutLinkSafetyThenKill) {
                outcome.problems.append("\(problem); see \(logs)")
                return outcome
            }
        }
        // A random moment: anywhere in the next two seconds of requests.
        Thread.sleep(forTimeInterval: Double.random(in: 0...2, using: &random))
        let qemuPID = Int32((try? String(contentsOfFile: "\(directory)/run-primary/qemu.pid", encoding: .utf8)) ?? "") ?? 0
        let killedAt = ContinuousClock.now
        switch scenario {
        case .switchover:
            let reply = try runCLI(["switchover", "--config", configs.primary])
            guard reply.status == 0 else {
                outcome.violations.append("switchover failed: \(reply.stdout) \(reply.stderr); see \(logs)")
                return outcome
            }
        case .hang, .stopThenContinue:
            // The whole host hangs: agent and QEMU stop without closing anything.
            kill(primary.processIdentifier, SIGSTOP)
            kill(qemuPID, SIGSTOP)
        case .backupKill:
            let standbyPID = Int32((try? String(contentsOfFile: "\(directory)/run-backup/qemu.pid", encoding: .utf8)) ?? "") ?? 0
            kill(backup.processIdentifier, SIGKILL)
            if standbyPID > 0 { kill(standbyPID, SIGKILL) }
            backup.waitUntilExit()
        default:
            // The agent first: with it gone nothing can leave the gate, whatever QEMU still does.
            kill(primary.processIdentifier, SIGKILL)
            kill(qemuPID, SIGKILL)
            primary.waitUntilExit()
        }
        let before = client.history
        outcome.repliesBefore = before.count
        if scenario == .stopThenContinue,
           let problem = continueAfterTakeover(agent: primary, qemu: qemuPID, configs: configs, outcome: &outcome) {
            outcome.violations.append("\(problem); see \(logs)")
            return outcome
        }
        if scenario == .killThenActivate {
            // The backup finishes applying what it received; then the operator activates it.
            Thread.sleep(forTimeInterval: 0.2)
            kill(backup.processIdentifier, SIGTERM)
            backup.waitUntilExit()
            _ = try start(["activate", "--config", configs.backup, "--log-level", "info"], log: "\(logs)/activate.log")
        }
        outcome = try finish(outcome, client: client, before: before, failedAt: killedAt, scenario: scenario, configs: configs, logs: logs)
        return outcome
    }

    /// The checks after the VM moved: the client goes on, one copy is active, nothing it saw is
    /// missing, disk and memory agree, the file system is clean.
    private func finish(_ outcome: Outcome, client: CounterClient, before: [CounterClient.Reply], failedAt killedAt: ContinuousClock.Instant,
                        scenario: Scenario, configs: (primary: String, backup: String), logs: String) throws -> Outcome {
        var outcome = outcome
        // TCP retransmits within seconds; a connection that stays silent lost state the client
        // had seen acknowledged (requests or replies released before their checkpoint committed).
        guard client.waitForReplies(before.count + 10, timeout: .seconds(40)) else {
            outcome.violations.append("the client got no reply for 40 s after the failover (last value \(before.last?.value ?? 0)): "
                                      + "the backup lacks guest state the client had seen; \(client.errors); see \(logs)")
            return outcome
        }
        client.stop()
        let history = client.history
        outcome.repliesAfter = history.count - before.count
        outcome.connectionSurvived = client.reconnects == 0
        if let firstAfter = history.dropFirst(before.count).first {
            outcome.outageMilliseconds = (firstAfter.at - max(before.last?.at ?? killedAt, killedAt)).milliseconds
        }
        // The failover ends with the reply after the client's longest wait since the event: the
        // first reply after a kill, but after a partition the old primary may still release
        // replies it had acknowledged before the cut, and the takeover comes later.
        let instants = [max(before.last?.at ?? killedAt, killedAt)] + history.dropFirst(before.count).map(\.at)
        if let resumed = zip(instants, instants.dropFirst()).max(by: { $0.1 - $0.0 < $1.1 - $1.0 })?.1 {
            outcome.failoverMilliseconds = (resumed - killedAt).milliseconds
        }
        // The client's longest wait between two replies, wherever it fell (a partition's takeover
        // comes after replies of checkpoints acknowledged before the cut).
        outcome.longestSilenceMilliseconds = zip(history, history.dropFirst()).map { ($1.at - $0.at).milliseconds }.max() ?? 0

        // Exactly one active copy: the backup node runs the VM now (the primary, after a backup
        // kill); after a switchover the old primary serves as its backup (and is being
        // synchronised or already protecting it).
        if scenario != .killThenActivate {
            let node = scenario.movesTheVM ? "backup" : "primary"
            let active = try? self.status(scenario.movesTheVM ? configs.backup : configs.primary)
            if active?.role != .primary { outcome.violations.append("the \(node) node is not running the VM: \(active.map { "\($0)" } ?? "no status")") }
        }
        if scenario.oldPrimaryBecomesBackup {
            // The client may get its replies from the new primary (unprotected until then) before
            // the old one has restarted as its backup: wait for that, within reason.
            if waitForStatus(configs.primary, timeout: .seconds(30), { $0.role == .backup }) == nil {
                let old = try? self.status(configs.primary)
                if old?.role == .primary, (try? self.status(configs.backup))?.role == .primary { outcome.twoActiveCopies = true }
                outcome.violations.append("the old primary did not become the backup: \(old.map { "\($0)" } ?? "no status")")
            }
        }
        // Never a smaller or a repeated counter.
        for (previous, next) in zip(history, history.dropFirst()) where next.value <= previous.value {
            outcome.counterRegressions += 1
            outcome.violations.append("the client got \(next.value) after \(previous.value)")
        }
        // Disk and memory agree after the failover, and every value the client ever got is covered.
        let status = try client.request("s").split(separator: " ")
        var guestCounter: UInt64?
        if status.count == 4, let memory = UInt64(status[1]), let fileLast = UInt64(status[2]), let lines = UInt64(status[3]) {
            if fileLast != memory || lines != memory {
                outcome.violations.append("memory counter \(memory), disk file ends at \(fileLast) with \(lines) lines")
            }
            guestCounter = memory
            outcome.lostAcknowledgedOutput = history.filter { $0.value > memory }.count
            if let last = history.last?.value, last > memory {
                outcome.violations.append("the client got \(last), beyond the activated guest's \(memory)")
            }
        } else {
            outcome.problems.append("unexpected status reply \(status)")
        }
        // A clean file system: remount read-only in the guest, stop the VM, fsck the surviving disk.
        let remount = try client.request("x")
        if remount != "OK" { outcome.problems.append("remount read-only: \(remount)") }
        killAll()
        let fsck = Process()
        fsck.executableURL = URL(fileURLWithPath: "/sbin/e2fsck")
        let survivingDisk = "\(directory)/\(scenario.movesTheVM ? "backup" : "primary")-disk.img"
        fsck.arguments = ["-fn", survivingDisk]
        fsck.standardOutput = FileHandle.nullDevice
        fsck.standardError = FileHandle.nullDevice
        try fsck.run()
        fsck.waitUntilExit()
        outcome.fsckClean = fsck.terminationStatus == 0
        if fsck.terminationStatus != 0 { outcome.violations.append("e2fsck -fn found problems (exit \(fsck.terminationStatus))") }
        // The guest answered from its page cache; the disk image itself must hold the same file
        // (it would not if replicated writes had landed elsewhere, e.g. in another disk's image).
        if let guestCounter, let log = try? HostCommand.execute("/sbin/debugfs", ["-R", "cat /counter.log", survivingDisk]) {
            let values = log.stdout.split(separator: "\n").map { UInt64($0) }
            if values.count != Int(guestCounter) || values.last != guestCounter || values.contains(nil) {
                outcome.violations.append("the disk image's counter.log has \(values.count) lines ending at \(values.last.map { "\($0.map(String.init) ?? "garbage")" } ?? "nothing"), "
                                          + "the guest's counter is \(guestCounter)")
            }
        }
        // The first of two disks is never mounted in the guest: the surviving copy's must still
        // be the primary's, byte for byte (the sync copied it; no write of the counter's disk
        // may land in it).
        // Likewise the UEFI variable store: the firmware writes it while booting, under protection,
        // and nothing writes it once the guest runs.
        for (image, what) in [("system.img", "first disk"), ("vars.fd", "UEFI variable store")]
        where image == "system.img" ? shape.disks == 2 : shape.uefi {
            let same = try? HostCommand.execute("/usr/bin/cmp", ["-s", "\(directory)/primary-\(image)", "\(directory)/backup-\(image)"])
            if same?.status != 0 { outcome.violations.append("the backup's \(what) differs from the primary's, which the guest never wrote") }
        }
        outcome.summary = "\(outcome.repliesBefore) replies before the kill (last \(before.last?.value ?? 0)), \(outcome.repliesAfter) after "
            + "(first \(history.dropFirst(before.count).first?.value ?? 0)), "
            + "outage \(Int(outcome.outageMilliseconds)) ms, longest silence \(Int(outcome.longestSilenceMilliseconds)) ms, connection \(outcome.connectionSurvived ? "survived" : "re-established")"
        return outcome
    }
}
