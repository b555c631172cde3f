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
                      SwitchoverCommand.self, FailoverCommand.self, StatusCommand.self, FleetCommand.self, SpareCommand.self, DrillCommand.self, InspectCommand.self, ImportCommand.self,
                      DemoCommand.self]
    )
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
extension LogFormat: ExpressibleByArgument {}
extension NodeRole: ExpressibleByArgument {}
