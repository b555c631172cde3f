import ArgumentParser
import Foundation
import UnderstudyAgent

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

extension ConfigOptions {
    init(config: String) {
        self.init()
        self.config = config
    }

    /// Runs this configuration's node in `mode` until SIGTERM or SIGINT; a fatal error exits non-zero.
    func runNode(_ mode: NodeDaemon.Mode, log: LogOptions) async throws {
        let daemon: NodeDaemon
        do {
            daemon = try NodeDaemon(configurationFile: config, mode: mode)
        } catch {
            throw ValidationError("\(error)")
        }
        let (logger, levels) = log.bootstrapReloadable(daemon.configuration)
        try await daemon.run(logger: logger, levels: levels, levelOverride: log.logLevel)
    }

    /// Sends a control command to the agent for this configuration and prints its reply.
    func send(_ command: String) throws {
        let reply = try JSONDecoder().decode(ControlReply.self, from: ControlServer.request(command, path: try load().controlSocket))
        print(reply.message)
        if !reply.ok { throw ExitCode.failure }
    }
}
