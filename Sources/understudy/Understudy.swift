import ArgumentParser
import Foundation
import Logging
import UnderstudyAgent
import UnderstudyTransport

@main
struct Understudy: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "understudy",
        abstract: "Fault-tolerant VM replication: a hot standby that takes over with nothing lost.",
        discussion: """
            A primary agent checkpoints a running VM many times per second and streams each checkpoint \
            (dirty memory pages, device state, disk writes), LZ4-compressed, over mutually authenticated \
            TLS 1.3 to a backup agent, which can resume the VM from the last committed checkpoint.
            """,
        version: UnderstudyVersion.summary,
        subcommands: [VersionCommand.self, CertsCommand.self, PrimaryCommand.self, BackupCommand.self, ActivateCommand.self,
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
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .warning

    func bootstrap() -> Logger {
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: "understudy")
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
