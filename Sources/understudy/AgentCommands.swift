import ArgumentParser
import Foundation
import Logging
import UnderstudyAgent
import UnderstudyQEMU
import UnderstudyReplica
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
            VM's memory while it runs (initial sync), then checkpoints it every interval until \
            SIGINT or SIGTERM, which stop the VM and the agent.
            """)

    @OptionGroup var options: ConfigOptions
    @OptionGroup var log: LogOptions

    func run() throws {
        let logger = log.bootstrap()
        let configuration = try options.load()
        let primaryConfiguration = try configuration.primary()
        let stop = StopSignal()
        let preload = PreloadLibrary.locate()
        if preload == nil, configuration.dirtyTracking != .compare {
            logger.warning("\(PreloadLibrary.fileName) not found: dirty tracking falls back to page comparison")
        }
        let buffering = !configuration.unsafeNoOutputBuffering
        let devices = try GuestDevices(vm: configuration.vm, diskImage: configuration.vm.diskImage, tap: configuration.tap,
                                       mac: configuration.mac, outputBufferBytes: configuration.outputBufferBytes,
                                       role: .protected(buffering: buffering), logger: logger)
        defer { devices.stop() }
        let source = try QEMUCheckpointSource(description: configuration.vm, preloadLibrary: preload,
                                              tracking: configuration.dirtyTracking, extraArguments: devices.qemuArguments,
                                              boundary: { epoch, checkpoint in devices.seal(epoch: epoch, into: checkpoint) },
                                              logger: logger) { error in
            stop.trigger("\(error)")
        }
        defer { source.shutdown() }
        let replicator = PrimaryReplicator(source: source, configuration: primaryConfiguration, disk: devices.diskImage, logger: logger,
                                           onRelease: { devices.release(through: $0) })
        let state = AgentState("starting")
        let control = try ControlServer(path: configuration.controlSocket) {
            var status = AgentStatus.primary(vm: configuration.vm.id, state: state.value, detail: stop.why,
                                             statistics: replicator.statistics, dirtyTracking: "\(source.trackingMethod)")
            status.add(devices: devices)
            return status
        }
        defer { control.close() }
        state.set("syncing")
        try replicator.start()
        state.set("protecting")
        logger.notice("protecting", metadata: ["vm": "\(configuration.vm.id)", "backup": "\(primaryConfiguration.backup)",
                                               "interval-ms": "\(configuration.interval.seconds * 1000)"])
        defer { replicator.stop() }
        do {
            try replicator.runCheckpoints(shouldStop: { stop.isSet })
        } catch {
            state.set("failed")
            throw error
        }
        state.set("stopped")
        if let why = stop.why, why != "interrupted", why != "terminated" { throw QEMUError.io(why) }
    }
}

struct BackupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Receive checkpoints from the primary and keep the replica.",
        discussion: "Listens for the primary, verifies and applies each checkpoint to the replica, until SIGINT or SIGTERM.")

    @OptionGroup var options: ConfigOptions
    @OptionGroup var log: LogOptions

    func run() throws {
        let logger = log.bootstrap()
        let configuration = try options.load()
        let receiver = try BackupReceiver(configuration: try configuration.backup(), logger: logger)
        let stop = StopSignal()
        let control = try ControlServer(path: configuration.controlSocket) {
            AgentStatus.backup(vm: configuration.vm.id, state: "serving", statistics: receiver.statistics)
        }
        defer { control.close() }
        let server = JoinableThread(name: "backup-accept") { receiver.serve() }
        logger.notice("backup serving", metadata: ["vm": "\(configuration.vm.id)", "listen": "\(receiver.endpoint)"])
        stop.wait()
        receiver.stop()
        server.join()
    }
}

struct ActivateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "activate",
        abstract: "Start the VM on this backup from the last committed checkpoint.",
        discussion: """
            Run it on the backup when the primary is gone (and the backup agent is stopped): QEMU starts \
            from the replica's memory and device state, resumes, and announces itself on the network. \
            The command supervises the VM until SIGINT or SIGTERM, which stop it.
            """)

    @OptionGroup var options: ConfigOptions
    @OptionGroup var log: LogOptions

    func run() throws {
        let logger = log.bootstrap()
        let configuration = try options.load()
        guard let directory = configuration.replicaDirectory else {
            throw ValidationError("\(configuration.source): backup.replica_dir: missing required key: activation needs the replica")
        }
        let store = try ReplicaStore(directory: directory, identity: configuration.identity, diskPath: configuration.vm.diskImage)
        let stop = StopSignal()
        // The VM runs unprotected here until a backup protects it again: its disk is the replica's,
        // served by this agent, and its output leaves at once.
        let devices = try GuestDevices(vm: configuration.vm, diskImage: store.diskPath, tap: configuration.tap, mac: configuration.mac,
                                       outputBufferBytes: configuration.outputBufferBytes, role: .unprotected, logger: logger)
        defer { devices.stop() }
        let activation = try Activator.activate(store: store, description: configuration.vm, preloadLibrary: PreloadLibrary.locate(),
                                                tracking: configuration.dirtyTracking, extraArguments: devices.qemuArguments,
                                                logger: logger) { error in
            stop.trigger("\(error)")
        }
        defer { activation.source.shutdown() }
        print(String(format: "VM %@ running from checkpoint %llu (activated in %.0f ms)", configuration.vm.id, activation.epoch,
                     activation.duration.seconds * 1000))
        fflush(nil)
        let control = try ControlServer(path: configuration.controlSocket) {
            var status = AgentStatus(role: "active", vm: configuration.vm.id, state: stop.isSet ? "stopped" : "running")
            status.committedEpoch = activation.epoch
            status.detail = stop.why ?? "unprotected: no backup"
            status.add(devices: devices)
            return status
        }
        defer { control.close() }
        stop.wait()
    }
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

/// The agent's lifecycle state as shown in status, shared between threads.
final class AgentState: @unchecked Sendable {
    private let lock = NSLock()
    private var current: String
    init(_ initial: String) { current = initial }
    func set(_ value: String) { lock.lock(); current = value; lock.unlock() }
    var value: String { lock.lock(); defer { lock.unlock() }; return current }
}

extension ConfigOptions {
    init(config: String) {
        self.init()
        self.config = config
    }
}
