import ArgumentParser
import UnderstudyAgent

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

    func run() async throws { try await options.runNode(.daemon(override: startAs), log: log) }
}
