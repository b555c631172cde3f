import ArgumentParser
import Foundation
import UnderstudyAgent
import UnderstudySystem

struct SpareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spare",
        abstract: "Run this host as a fleet spare: restore the protection of VMs whose backup host is gone.",
        discussion: """
            Watches the fleet registry in etcd. A VM unprotected for longer than \
            fleet.reprotect_after_s because its backup host is gone is claimed, by one spare, in one \
            etcd transaction; the winner starts a backup node for it (`understudy backup`, its \
            configuration written under spare.state_dir) and the VM's primary synchronises it in \
            full. SIGINT or SIGTERM stop the spare and its backup nodes. See docs/OPERATIONS.md, \
            "Spare hosts".
            """)

    @Option(name: .long, help: "The spare's configuration file (TOML): [node], [fleet], [spare].")
    var config: String

    @OptionGroup var log: LogOptions

    func run() throws {
        let spare: SpareConfiguration
        do {
            spare = try SpareConfiguration(contentsOfFile: config)
        } catch {
            throw ValidationError("\(error)")
        }
        let levels = LogLevelControl(log.logLevel ?? spare.logLevel ?? AgentLogHandler.defaultLevel)
        let logger = AgentLogHandler.bootstrap(format: log.logFormat ?? .auto, control: levels)
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        SpareHost(configuration: spare, executable: executable, logger: logger).run(until: StopSignal())
    }
}
