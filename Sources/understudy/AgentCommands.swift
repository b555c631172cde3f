import ArgumentParser
import Foundation
import Logging
import UnderstudyAgent
import UnderstudyQEMU
import UnderstudyReplica
import ServiceLifecycle
import UnderstudyTransport

/// Options of the commands that run an agent from a configuration file.
struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: "The node's configuration file (TOML); see Deploy/ for examples.")
    var config: String

    func load() throws -> AgentConfiguration {
        do {
            return try AgentConfiguration(contentsOfFile: config)
        } catch {
            throw ValidationError("\(error)")
        }
    }
}

struct PrimaryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "primary",
        abstract: "Run the VM and protect it: checkpoint it continuously to the backup.",
        discussion: """
            Starts QEMU for the configured VM, connects to the backup over mutual TLS, copies the \
            VM's memory and disk while it runs (initial sync), then checkpoints it every interval. \
            When the backup is lost, output is held for failover.grace_ms, then the failover policy \
            applies, and the agent keeps reconnecting (re-protection). After `understudy switchover` \
            this node becomes the backup. SIGINT or SIGTERM stop the VM and the agent.
            """)

    @OptionGroup var options: ConfigOptions
    @OptionGroup var log: LogOptions

    func run() throws { try runNode(options, log, startingAs: .primary) }
}

struct BackupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Receive checkpoints from the primary, keep the replica, take over when needed.",
        discussion: """
            Listens for the primary, verifies and applies each checkpoint to the replica. When the \
            primary is lost (heartbeats) and automatic failover is allowed (a witness, or \
            failover.without_witness), when the primary hands over (switchover), or on \
            `understudy failover --force`, it activates the VM here and protects it in turn. \
            SIGINT or SIGTERM stop it.
            """)

    @OptionGroup var options: ConfigOptions
    @OptionGroup var log: LogOptions

    func run() throws { try runNode(options, log, startingAs: .backup) }
}

struct ActivateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "activate",
        abstract: "Start the VM on this backup from the last committed checkpoint (the backup agent stopped).",
        discussion: """
            For a backup whose agent is not running: QEMU starts from the replica's memory and device \
            state, resumes, and announces itself on the network; the VM is then protected again as \
            soon as a backup answers at peer.address. With a witness, only once this node holds its \
            lease. Runs until SIGINT or SIGTERM, which stop the VM.
            """)

    @OptionGroup var options: ConfigOptions
    @OptionGroup var log: LogOptions

    func run() throws {
        let configuration = try options.load()
        guard configuration.replicaDirectory != nil else {
            throw ValidationError("\(configuration.source): backup.replica_dir: missing required key: activation needs the replica")
        }
        try runNode(options, log, startingAs: .activate)
    }
}

struct SwitchoverCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchover",
        abstract: "Swap roles without loss: the backup takes over, this primary becomes its backup.",
        discussion: """
            Run on the primary. It takes a final checkpoint with the guest paused, waits for the \
            backup's acknowledgement, and hands the VM over; protection restarts in the other \
            direction by itself (a full resynchronisation).
            """)

    @OptionGroup var options: ConfigOptions

    func run() throws { try sendCommand("switchover", options) }
}

struct FailoverCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "failover",
        abstract: "Promote this backup now (manual failover).",
        discussion: """
            Run on the backup when the primary is known to be down but automatic failover is off or \
            has not happened. With a witness the backup still needs its lease, so a primary that is \
            alive and holds it is never doubled.
            """)

    @OptionGroup var options: ConfigOptions

    @Flag(name: .long, help: "Required: confirms that the primary must be given up.")
    var force = false

    func validate() throws {
        guard force else { throw ValidationError("failover promotes this backup and abandons the primary: confirm with --force") }
    }

    func run() throws { try sendCommand("failover", options) }
}

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run this node of the pair as a daemon; its role comes from its configuration and its last role.",
        discussion: """
            A new pair's nodes start in node.role. From then on the node keeps the role it last had in \
            node.state_dir: a backup restarts as the backup; a node that stopped the VM in an orderly way \
            boots it again; a node that died while running the VM restarts as the backup, because its \
            peer has most likely taken over (--start-as primary overrides that, once you know the VM runs \
            nowhere). With a witness, a node never boots the VM while the other node is the active copy. \
            SIGTERM or SIGINT: orderly shutdown; on the node running the VM a switchover to the in-sync \
            backup first (node.on_stop = "switchover", the default), so that the VM keeps running. \
            SIGHUP: reload the configuration file (the log level applies at once, other changes at the next \
            start; an invalid file changes nothing).
            """)

    @OptionGroup var options: ConfigOptions
    @OptionGroup var log: LogOptions

    @Option(name: .long, help: "Start in this role whatever the node's record says: primary (boot the VM here) or backup.")
    var startAs: NodeRole?

    func run() async throws {
        let configuration = try options.load()
        guard let configured = startAs ?? configuration.role else {
            throw ValidationError("\(configuration.source): node.role: missing required key: understudy run starts a new pair's node "
                                  + "in this role (\"primary\" or \"backup\")")
        }
        // The node can take either role over its life (switchover, failover): both must be complete.
        try checkRoleKeys(configuration, [.primary, .backup])
        let document: TOMLDocument
        do {
            document = try TOMLDocument(contentsOfFile: options.config)
        } catch {
            throw ValidationError("\(error)")
        }
        let (logger, levels) = log.bootstrapReloadable(configuration)
        let record = RoleRecord(directory: configuration.stateDirectory)
        let last: RoleRecord.Entry?
        do {
            last = try record.load()
        } catch {
            throw ValidationError("\(error)")
        }
        let decision = StartingRole.decide(configured: configured, last: last, override: startAs)
        logger.notice("starting", metadata: ["vm": "\(configuration.vm.id)", "role": "\(decision.start)", "reason": "\(decision.reason)",
                                             "record": "\(record.path)"])
        warnIfUnwitnessed(configuration, logger)
        let stop = StopSignal(signals: [])
        let node = PairNode(configuration: configuration, record: record, logger: logger, stop: stop)
        let control = try ControlServer(path: configuration.controlSocket, status: { node.status() }, commands: node.commands)
        defer { control.close() }
        let reloader = ConfigurationReloader(path: options.config, loaded: document, levels: levels, levelOverride: log.logLevel,
                                             logger: logger)
        let service = NodeService(node: node, start: decision.start, onStop: configuration.onStop, stop: stop, reloader: reloader)
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [.init(service: service)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

/// The keys each role needs, checked before anything starts.
private func checkRoleKeys(_ configuration: AgentConfiguration, _ roles: [NodeRole]) throws {
    do {
        for role in roles {
            switch role {
            case .primary: _ = try configuration.primary()
            case .backup: _ = try configuration.backup()
            }
        }
    } catch {
        throw ValidationError("\(error)")
    }
}

private func warnIfUnwitnessed(_ configuration: AgentConfiguration, _ logger: Logger) {
    if configuration.witnessEndpoints.isEmpty, configuration.failover.withoutWitness {
        logger.warning("""
            no witness: automatic failover is on by failover.without_witness. If the two nodes lose each other while both \
            run, both can be active (split brain); see docs/OPERATIONS.md
            """)
    }
}

/// Runs the pair node in `start` until SIGINT/SIGTERM; a fatal error exits non-zero.
private func runNode(_ options: ConfigOptions, _ log: LogOptions, startingAs start: PairNode.Start) throws {
    let configuration = try options.load()
    let logger = log.bootstrap(configuration)
    try checkRoleKeys(configuration, [start == .backup || start == .activate ? .backup : .primary])
    warnIfUnwitnessed(configuration, logger)
    let stop = StopSignal()
    let node = PairNode(configuration: configuration, logger: logger, stop: stop)
    let control = try ControlServer(path: configuration.controlSocket, status: { node.status() }, commands: node.commands)
    defer { control.close() }
    try node.run(startingAs: start)
    if let why = stop.why, why != "interrupted", why != "terminated" { throw QEMUError.io(why) }
}

/// Sends a control command to the agent for this configuration and prints its reply.
private func sendCommand(_ command: String, _ options: ConfigOptions) throws {
    let path = try options.load().controlSocket
    let reply = try JSONDecoder().decode(ControlReply.self, from: ControlServer.request(command, path: path))
    print(reply.message)
    if !reply.ok { throw ExitCode.failure }
}

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show what the agent on this node is doing.")

    @Option(name: .long, help: "The node's configuration file (to find the agent's control socket).")
    var config: String?

    @Option(name: .long, help: "The agent's control socket, instead of --config.")
    var socket: String?

    @Flag(name: .long, help: "Print JSON.")
    var json = false

    @Flag(name: .long, help: "Keep showing the status, refreshed every --interval seconds, until interrupted.")
    var watch = false

    @Option(name: .long, help: "Seconds between refreshes with --watch.")
    var interval: Double = 1

    func validate() throws {
        guard (config == nil) != (socket == nil) else { throw ValidationError("give either --config or --socket") }
        guard interval >= 0.05 && interval <= 3600 else { throw ValidationError("--interval must be between 0.05 and 3600 seconds") }
        guard !(watch && json) else { throw ValidationError("--watch shows a table for people; poll --json for scripts") }
    }

    func run() throws {
        let path = try socket ?? ConfigOptions(config: config!).load().controlSocket
        guard watch else { return try show(path) }
        // Redraw in place on a terminal; append (with a separator) when the output is a file or a pipe.
        let terminal = isatty(STDOUT_FILENO) != 0
        while true {
            if terminal { print("\u{1B}[H\u{1B}[2J", terminator: "") }
            print(Date().formatted(.iso8601))
            do {
                try show(path)
            } catch {
                print("no status: \(error)")
            }
            if !terminal { print("") }
            fflush(nil)
            Thread.sleep(forTimeInterval: interval)
        }
    }

    private func show(_ path: String) throws {
        let reply = try ControlServer.request("status", path: path)
        if json {
            print(String(decoding: reply, as: UTF8.self), terminator: "")
            return
        }
        let status = try JSONDecoder().decode(AgentStatus.self, from: reply)
        print(status.humanReadable)
    }
}

extension ConfigOptions {
    init(config: String) {
        self.init()
        self.config = config
    }
}
