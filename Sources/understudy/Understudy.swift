import ArgumentParser
import Foundation
import Logging
import UnderstudyAgent
import UnderstudyTransport

@main
struct Understudy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "understudy",
        abstract: "Fault-tolerant VM replication: a hot standby that takes over with nothing lost.",
        discussion: """
            A primary agent checkpoints a running VM many times per second and streams each checkpoint \
            (dirty memory pages, device state, disk writes), LZ4-compressed, over mutually authenticated \
            TLS 1.3 to a backup agent, which can resume the VM from the last committed checkpoint.
            """,
        version: UnderstudyVersion.summary,
        subcommands: [VersionCommand.self, CertsCommand.self, RunCommand.self, PrimaryCommand.self, BackupCommand.self, ActivateCommand.self,
                      SwitchoverCommand.self, FailoverCommand.self, StatusCommand.self, DrillCommand.self, DemoCommand.self]
    )
}

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Print the version and protocol version.")

    func run() {
        print(UnderstudyVersion.summary)
    }
}

/// Log options shared by the commands that run agents.
struct LogOptions: ParsableArguments {
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical (default: the configuration's log.level, else warning).")
    var logLevel: Logger.Level?

    @Option(name: .long, help: "Log format: auto (human on a terminal, JSON lines otherwise), human, json (default: log.format, else auto).")
    var logFormat: LogFormat?

    /// Installs the process's log handler: the command line first, then the configuration's
    /// `[log]`, then the defaults.
    func bootstrap(_ configuration: AgentConfiguration? = nil) -> Logger { bootstrapReloadable(configuration).logger }

    /// `bootstrap`, with the control that changes the level later (SIGHUP).
    func bootstrapReloadable(_ configuration: AgentConfiguration?) -> (logger: Logger, levels: LogLevelControl) {
        let levels = LogLevelControl(logLevel ?? configuration?.logLevel ?? AgentLogHandler.defaultLevel)
        let format = logFormat ?? configuration?.logFormat ?? .auto
        return (AgentLogHandler.bootstrap(format: format, control: levels), levels)
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
extension LogFormat: ExpressibleByArgument {}
extension NodeRole: ExpressibleByArgument {}
