import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif
import UnderstudyAgent
import UnderstudyProtocol
import UnderstudySystem

/// `understudy demo`: a real Linux VM protected on this machine, end to end, with the agents an
/// operator runs. Two network namespaces stand in for the two hosts and a third for a client
/// (`PairNetwork`); the test guest (`CounterGuestImage`: the counter service on an ext4 disk)
/// runs under the primary agent and is checkpointed to the backup agent, both `understudy`
/// processes started from this binary with generated configurations and throw-away
/// certificates. The demo shows the checkpoint statistics live, runs a failover drill, then
/// kills the primary (agent and QEMU, SIGKILL) while a client keeps one TCP connection to the
/// guest, and checks what that client saw: the backup takes over and the connection continues
/// with nothing lost or repeated.
///
/// Everything it creates carries its process id and is removed when `run` returns or throws,
/// also after SIGINT or SIGTERM (`stop`).
public final class VMDemo: @unchecked Sendable {
    public struct Options: Sendable {
        /// Seconds of protection shown live before the drill.
        public var protectedSeconds: Double = 15
        /// The `understudy` binary whose `run` (both nodes) and `certs init` the demo runs.
        public var executable: String
        /// Deploy/guest of this checkout: the guest's sources and build script.
        public var guestDirectory: URL
        /// Keep the working directory (configurations, logs, disks) instead of removing it.
        public var keep = false

        public init(executable: String, guestDirectory: URL) {
            self.executable = executable
            self.guestDirectory = guestDirectory
        }
    }

    /// Deploy/guest of the checkout this binary was built from, or of the current directory.
    public static func guestDirectory() -> URL {
        let built = CounterGuestImage.checkout.appendingPathComponent("Deploy/guest")
        let here = URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("Deploy/guest")
        return FileManager.default.fileExists(atPath: here.appendingPathComponent("build-initramfs.sh").path) ? here : built
    }

    /// The guest's counter service's port (Deploy/guest/counter-service.c).
    static let servicePort: UInt16 = 7000
    /// A peer is lost after 200 ms of silence (heartbeats every 40 ms when nothing else is sent),
    /// also on a busy two-core machine running two TCG guests during the drill: besides the
    /// replication connection, whose threads may wait for a core, the nodes send each other UDP
    /// heartbeats from real-time threads (`heartbeat.udp_listen`), and a peer is lost only when
    /// both paths are silent.
    static let heartbeatConfiguration = HeartbeatMonitor.Configuration(interval: .milliseconds(40), missedLimit: 5)
    static let datagramPort = 7401
    static func heartbeat(listen: String, peer: String) -> String {
        "[heartbeat]\ninterval_ms = \(heartbeatConfiguration.interval.wholeMilliseconds)\n"
            + "missed = \(heartbeatConfiguration.missedLimit)\nmin_timeout_ms = \(heartbeatConfiguration.minimumTimeout.wholeMilliseconds)\n"
            + "udp_listen = \"\(listen):\(datagramPort)\"\nudp_peer = \"\(peer):\(datagramPort)\"\n"
    }
    static var heartbeatTimeoutMs: Double { heartbeatConfiguration.timeout.seconds * 1000 }

    private let options: Options
    private let stop: StopSignal
    private let say: @Sendable (String) -> Void
    private let logger: Logger
    private let directory: String
    private let vm: String
    private let tag: String
    private var network: PairNetwork?
    private var agents: [Process] = []
    private var client: CounterClient?
    /// The client's round trips while the VM was protected and nothing else ran (before the drill).
    private var protectedRoundTrips: [Duration] = []

    /// `say` receives the progress, a line at a time; `logger` is the in-process drill's.
    public init(options: Options, stop: StopSignal, logger: Logger, say: @escaping @Sendable (String) -> Void) {
        self.options = options
        self.stop = stop
        self.logger = logger
        self.say = say
        tag = String(getpid())
        vm = "demo\(tag)"
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-demo-\(tag)").path
    }

    /// What the demo needs that is not there, each with what to do about it; empty when ready.
    public static func missingPrerequisites(guestDirectory: URL) -> [String] {
        var missing: [String] = []
        if geteuid() != 0 { missing.append("root: the demo creates network namespaces and TAP devices (run it with sudo)") }
        if !FileManager.default.fileExists(atPath: "/dev/net/tun") { missing.append("/dev/net/tun (TAP devices): load the tun module") }
        for program in ["qemu-system-x86_64", "ip", "mkfs.ext4", "gcc"] where findOnPath(program) == nil {
            missing.append("\(program) on PATH: run ./Deploy/install.sh")
        }
        if CounterGuestImage.kernel == nil {
            missing.append("the guest kernel in \(CounterGuestImage.cache): run ./Deploy/install.sh")
        }
        if !FileManager.default.fileExists(atPath: guestDirectory.appendingPathComponent("build-initramfs.sh").path) {
            missing.append("the guest's sources in \(guestDirectory.path): run the demo from the repository (swift run understudy demo)")
        }
        return missing
    }

    private static func findOnPath(_ program: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin"
        // Root's sbin directories even when PATH lacks them (sudo keeps a user's PATH on some systems).
        let directories = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin"]
        return directories.map { "\($0)/\(program)" }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Runs the whole demo and removes everything it made; the report says whether the failover
    /// kept the client's connection and everything the client had seen.
    public func run() throws -> DemoReport {
        let missing = Self.missingPrerequisites(guestDirectory: options.guestDirectory)
        guard missing.isEmpty else {
            throw HarnessError("the demo needs:\n  - " + missing.joined(separator: "\n  - ") + "\n(./Deploy/install.sh installs the packages and fetches the kernel)")
        }
        defer { cleanUp() }
        var report = DemoReport(protectedSeconds: options.protectedSeconds, heartbeatTimeoutMs: Self.heartbeatTimeoutMs)
        let configs = try prepare()
        let (primary, protectedAt) = try startPair(configs)
        let client = CounterClient(network: network!, port: Self.servicePort)
        self.client = client
        client.start()
        try waitFor("the guest's counter service to answer the client", timeout: .seconds(60)) { client.history.count >= 5 }
        say("      a client in its own namespace asks the guest's counter service for the next value, back to back, "
            + "over one TCP connection (the guest booted and answered \(String(format: "%.1f", (ContinuousClock.now - protectedAt).seconds)) s "
            + "after protection began)")
        try showStatistics(client: client, into: &report)
        try drill(configs.backup, into: &report)
        try failover(primary: primary, configs: configs, client: client, into: &report)
        return report
    }

    /// Certificates, disks, the network and the two nodes' configurations.
    private func prepare() throws -> (primary: String, backup: String) {
        say("[1/5] preparing: the test guest (Debian cloud kernel, busybox, a TCP counter service on an ext4 disk), "
            + "certificates, disks, network namespaces")
        let guest = try CounterGuestImage.build(guestDirectory: options.guestDirectory)
        try Self.buildPreloadLibraryIfMissing(executable: options.executable, guestDirectory: options.guestDirectory, say: say)
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try HostCommand.run([options.executable, "certs", "init", "--dir", "\(directory)/certs", "--nodes", "primary,backup"])
        try HostCommand.run(["truncate", "-s", "64M", "\(directory)/primary-disk.img", "\(directory)/backup-disk.img"])
        try HostCommand.run(["mkfs.ext4", "-q", "-F", "\(directory)/primary-disk.img"])
        let network = try PairNetwork(tapCount: 2, nodeNamespaces: true, tag: tag)
        self.network = network
        say("      primary host: namespace \(network.nodeNamespaces[0]) at \(network.nodeAddresses[0]); "
            + "backup host: \(network.nodeNamespaces[1]) at \(network.nodeAddresses[1]); "
            + "client: \(network.namespace) at \(network.clientAddress); guest: \(network.guestAddress):\(Self.servicePort)")
        let port: UInt16 = 7400
        return try AgentPair.writeConfigs(
            in: directory, port: port, vm: vm, guest: guest,
            cmdline: "understudy.run=counter-service \(network.guestCommandLine)", replicaDirectory: "/dev/shm/understudy-\(vm)-replica",
            backupHost: network.nodeAddresses[1], disks: ("\(directory)/primary-disk.img", "\(directory)/backup-disk.img"),
            taps: (network.taps[0], network.taps[1]), backupPeerAddress: "\(network.nodeAddresses[0]):\(port)",
            // Both nodes can take either role (`understudy run` checks that they can).
            primaryExtra: """
                [backup]
                listen = "\(network.nodeAddresses[0]):\(port)"
                replica_dir = "/dev/shm/understudy-\(vm)-replica-p"
                [failover]
                without_witness = true
                \(Self.heartbeat(listen: network.nodeAddresses[0], peer: network.nodeAddresses[1]))
                """,
            backupExtra: """
                [failover]
                without_witness = true
                \(Self.heartbeat(listen: network.nodeAddresses[1], peer: network.nodeAddresses[0]))
                [drill]
                sandbox_address = "\(network.clientAddress)/\(network.prefixLength)"
                """)
    }

    /// `swift run understudy` builds only that product, not the library the primary loads into
    /// QEMU for exact dirty tracking (without it the agent compares pages, too slow for this guest
    /// under TCG): build it into the same build directory, next to the binary.
    static func buildPreloadLibraryIfMissing(executable: String, guestDirectory: URL, say: (String) -> Void) throws {
        guard PreloadLibrary.locate() == nil else { return }
        let binary = URL(fileURLWithPath: executable).deletingLastPathComponent()  // SCRATCH/TRIPLE/CONFIGURATION
        let scratch = binary.deletingLastPathComponent().deletingLastPathComponent()
        let package = guestDirectory.deletingLastPathComponent().deletingLastPathComponent()
        guard FileManager.default.fileExists(atPath: package.appendingPathComponent("Package.swift").path) else {
            throw HarnessError("\(PreloadLibrary.fileName) is not next to \(executable): build it with swift build")
        }
        say("      building \(PreloadLibrary.fileName) next to the binary (swift build --product UnderstudyPreload)")
        do {
            try HostCommand.run(["swift", "build", "-c", binary.lastPathComponent, "--product", "UnderstudyPreload",
                                 "--package-path", package.path, "--scratch-path", scratch.path])
        } catch {
            throw HarnessError("\(PreloadLibrary.fileName) is missing and building it failed (run swift build -c release): \(error)")
        }
    }

    /// Starts the backup agent, then the primary, each in its host's namespace; returns the
    /// primary once it protects the VM, and when that was.
    private func startPair(_ configs: (primary: String, backup: String)) throws -> (Process, ContinuousClock.Instant) {
        say("[2/5] starting the backup agent, then the primary agent: QEMU boots the guest, "
            + "the primary copies its memory and disk to the backup (initial sync), then checkpoints every 25 ms")
        agents.append(try AgentPair.start(options.executable, ["run", "--config", configs.backup, "--log-level", "info"],
                                          log: "\(directory)/backup.log", namespace: network!.nodeNamespaces[1]))
        try waitFor("the backup agent to listen", timeout: .seconds(20)) { status(.backup) != nil }
        let primary = try AgentPair.start(options.executable, ["run", "--config", configs.primary, "--log-level", "info"],
                                          log: "\(directory)/primary.log", namespace: network!.nodeNamespaces[0])
        agents.append(primary)
        let started = ContinuousClock.now
        try waitFor("the primary to protect the VM", timeout: .seconds(120)) {
            guard primary.isRunning else { return true }
            return status(.primary)?.primary?.state == .protecting
        }
        guard primary.isRunning else { throw HarnessError("the primary agent exited: \(tail("primary.log"))") }
        let sync = status(.primary)?.primary
        say(String(format: "      protecting after %.1f s (initial sync of %d pages, dirty tracking: %@)",
                   (ContinuousClock.now - started).seconds, sync?.syncPages ?? 0, sync?.dirtyTracking ?? "?"))
        return (primary, .now)
    }

    /// One line a second for the protected phase: the primary's checkpoint statistics, the
    /// backup's committed checkpoint, the client's latest value.
    private func showStatistics(client: CounterClient, into report: inout DemoReport) throws {
        say("[3/5] protected: live checkpoint statistics for \(Int(options.protectedSeconds)) s "
            + "(from the agents' control sockets, as `understudy status` shows them)")
        say("        s   epoch  ckpt/s  pause p50  pause p99  dirty pages/ckpt  wire MB  wire MB/s  backup epoch  client value")
        let end = ContinuousClock.now + .milliseconds(Int(options.protectedSeconds * 1000))
        let first = client.history.count
        defer { protectedRoundTrips = client.history.dropFirst(first).map(\.roundTrip) }
        var second = 0
        var lastWire = status(.primary)?.primary?.wireBytes ?? 0
        repeat {
            if stop.wait(timeout: .seconds(1)) { throw HarnessError("interrupted") }
            second += 1
            guard let primary = status(.primary)?.primary else { throw HarnessError("the primary agent stopped answering: \(tail("primary.log"))") }
            let wire = primary.wireBytes ?? 0
            let backupEpoch = status(.backup)?.backup?.committedEpoch.map { "\($0)" } ?? "-"
            let value = client.history.last.map { "\($0.value)" } ?? "-"
            say(String(format: "      %3d  %6d  %6.1f  %6.1f ms  %6.1f ms  %16.0f  %7.1f  %9.2f  ", second, Int(primary.currentEpoch ?? 0),
                       primary.checkpointsPerSecond ?? 0, primary.pauseMillisecondsP50 ?? 0, primary.pauseMillisecondsP99 ?? 0,
                       primary.dirtyPagesPerCheckpoint ?? 0, Double(wire) / 1e6, Double(wire - lastWire) / 1e6)
                + String(repeating: " ", count: max(0, 12 - backupEpoch.count)) + backupEpoch
                + String(repeating: " ", count: max(0, 14 - value.count)) + value)
            lastWire = wire
            report.record(primary)
        } while ContinuousClock.now < end
    }

    /// `understudy drill` on the backup: a clone from the replica in a sandbox, probed, removed.
    private func drill(_ config: String, into report: inout DemoReport) throws {
        say("[4/5] failover drill on the backup: a clone of the VM from the replica's last checkpoint, "
            + "in a private namespace, probed on tcp:\(network!.guestAddress):\(Self.servicePort), then removed")
        let configuration = try AgentConfiguration(contentsOfFile: config)
        let drill = try Drill.run(configuration: configuration, probe: .tcp(Endpoint(host: network!.guestAddress, port: Self.servicePort)),
                                  timeout: .seconds(60), stop: stop, logger: logger)
        if stop.isSet { throw HarnessError("interrupted") }
        report.drillOk = drill.ok
        report.drillRecoveryMs = drill.recoveryMs
        report.drillStateAgeMs = drill.stateAgeMs
        say(drill.ok
            ? String(format: "      drill PASSED: the clone of checkpoint %d answered %.0f ms after it started; the state it recovered was %.0f ms old",
                     Int(drill.epoch), drill.recoveryMs ?? 0, drill.stateAgeMs)
            : "      drill FAILED: \(drill.message)")
    }

    /// Kills the primary host's agent and QEMU and follows the backup's takeover and the client.
    private func failover(primary: Process, configs: (primary: String, backup: String), client: CounterClient,
                          into report: inout DemoReport) throws {
        if let last = status(.primary)?.primary { report.record(last) }
        let qemu = Int32((try? String(contentsOfFile: "\(directory)/run-primary/qemu.pid", encoding: .utf8)) ?? "") ?? 0
        say("[5/5] failover: SIGKILL to the primary agent (pid \(primary.processIdentifier)) and its QEMU (pid \(qemu)), "
            + "as if its host died; the backup notices after \(Int(Self.heartbeatTimeoutMs)) ms of silence (heartbeats) "
            + "and resumes the VM from the last checkpoint")
        // The agent first: with it gone nothing leaves the output gate, whatever QEMU still does.
        kill(primary.processIdentifier, SIGKILL)
        if qemu > 0 { kill(qemu, SIGKILL) }
        let killedAt = ContinuousClock.now
        let killedAtWallClock = Date()
        primary.waitUntilExit()
        let before = client.history
        report.clientRepliesBeforeKill = before.count
        report.lastValueBeforeKill = before.last?.value
        var tookOver: ContinuousClock.Instant?
        do {
            try waitFor("the client's first reply after the failover", timeout: .seconds(40)) {
                if tookOver == nil, status(.backup)?.role == .primary {
                    tookOver = .now
                    say(String(format: "      the backup is the primary now (%.0f ms after the kill)", (ContinuousClock.now - killedAt).seconds * 1000))
                }
                return client.history.count > before.count
            }
        } catch let error as HarnessError where error.description != "interrupted" {
            report.message = "\(error); \(client.errors)"
        }
        if stop.isSet { throw HarnessError("interrupted") }
        // More replies show the connection really goes on, and time the survivor's round trips
        // (unprotected: its peer is dead).
        try? waitFor("more replies", timeout: .seconds(3)) { client.history.count >= before.count + 300 }
        client.stop()
        let history = client.history
        let after = history.dropFirst(before.count)
        report.takeoverMs = tookOver.map { ($0 - killedAt).seconds * 1000 }
        report.clientRepliesAfterFailover = after.count
        report.firstValueAfterFailover = after.first?.value
        report.failoverMs = after.first.map { ($0.at - killedAt).seconds * 1000 }
        report.connectionSurvived = !after.isEmpty && client.reconnects == 0
        // The first reply after the kill carries the failover; the ones after it are the survivor's usual.
        report.recordRoundTrips(protected: protectedRoundTrips, unprotected: after.dropFirst().map(\.roundTrip))
        let backupLog = (try? String(contentsOfFile: "\(directory)/backup.log", encoding: .utf8)) ?? ""
        let primaryLog = (try? String(contentsOfFile: "\(directory)/primary.log", encoding: .utf8)) ?? ""
        report.failoverBreakdown = FailoverTimeline(backupLog: backupLog, killedAt: killedAtWallClock,
                                                    firstReplyAt: report.failoverMs.map { killedAtWallClock.addingTimeInterval($0 / 1000) })
        report.falseAlarms = FailoverTimeline.times(of: FailoverTimeline.lost, in: backupLog).filter { $0 < killedAtWallClock }.count
        report.backupLostBeforeKill = FailoverTimeline.times(of: "backup lost", in: primaryLog).filter { $0 < killedAtWallClock }.count
        // The survivor's own view: its counter in memory and in the file on its disk.
        let survivor = try? client.request("s", timeout: .seconds(10)).split(separator: " ")
        if let survivor, survivor.count == 4, let memory = UInt64(survivor[1]), let file = UInt64(survivor[2]), let lines = UInt64(survivor[3]) {
            report.survivorCounter = memory
            report.survivorDiskAgrees = file == memory && lines == memory
        }
        report.finish(before: before.map(\.value), after: after.map(\.value))
        if let failover = report.failoverMs {
            say(String(format: "      the client's %@ connection went on: %@ before the kill, %@ %.0f ms after it (%d more replies)",
                       report.connectionSurvived ? "same TCP" : "re-established",
                       before.last.map { "last value \($0.value)" } ?? "no reply", after.first.map { "next value \($0.value)" } ?? "none",
                       failover, after.count))
        }
    }

    /// The agent's status through its control socket; nil when it does not answer.
    private func status(_ node: Node) -> AgentStatus? {
        // AgentPair puts each node's run directory, with its control socket, here.
        let socket = "\(directory)/run-\(node.rawValue)/control.sock"
        return (try? ControlServer.request("status", path: socket)).flatMap { try? JSONDecoder().decode(AgentStatus.self, from: $0) }
    }

    private enum Node: String { case primary, backup }

    /// Polls `condition` every 50 ms; throws on SIGINT/SIGTERM or after `timeout`.
    private func waitFor(_ what: String, timeout: Duration, _ condition: () -> Bool) throws {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            if stop.wait(timeout: .milliseconds(50)) { throw HarnessError("interrupted") }
            guard ContinuousClock.now < deadline else { throw HarnessError("timed out after \(timeout) waiting for \(what)") }
        }
    }

    /// The last lines of an agent's log, for an error message.
    private func tail(_ log: String) -> String {
        let text = (try? String(contentsOfFile: "\(directory)/\(log)", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(5).joined(separator: "\n    ")
    }

    /// Stops the client and the agents (SIGTERM, then SIGKILL), kills any QEMU of theirs that
    /// is left, removes the network, the shared-memory files and the working directory.
    private func cleanUp() {
        client?.stop()
        AgentPair.stop(agents, directory: directory)
        network?.remove()
        for file in (try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? [] where file.hasPrefix("understudy-\(vm)-") {
            try? FileManager.default.removeItem(atPath: "/dev/shm/\(file)")
        }
        if options.keep {
            say("kept \(directory) (configurations, agent logs, disks)")
        } else {
            try? FileManager.default.removeItem(atPath: directory)
        }
    }
}
