import ArgumentParser
import UnderstudyAgent

struct BackupCommand: AsyncParsableCommand {
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

    func run() async throws { try await options.runNode(.fixed(.backup), log: log) }
}
