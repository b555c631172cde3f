import ArgumentParser
import UnderstudyAgent

struct FailoverCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "failover",
        abstract: "Promote this backup now (manual failover).",
        discussion: """
            Run on the backup when the primary is known to be down but automatic failover is off or \
            has not happened. With a witness the backup still needs its lease, so a primary that is \
            alive and holds it is never doubled.
            """)

    @OptionGroup var options: ConfigOptions

    @Flag(name: .long, help: "Required: confirms that the primary must be given up.")
    var force = false

    func validate() throws {
        guard force else { throw ValidationError("failover promotes this backup and abandons the primary: confirm with --force") }
    }

    func run() throws { try options.send("failover") }
}
