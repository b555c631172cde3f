import ArgumentParser
import UnderstudyAgent

struct ActivateCommand: AsyncParsableCommand {
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

    func run() async throws { try await options.runNode(.fixed(.activate), log: log) }
}
