import ArgumentParser
import UnderstudyAgent

struct PrimaryCommand: AsyncParsableCommand {
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

    func run() async throws { try await options.runNode(.fixed(.primary), log: log) }
}
