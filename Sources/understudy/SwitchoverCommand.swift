import ArgumentParser
import UnderstudyAgent

struct SwitchoverCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchover",
        abstract: "Swap roles without loss: the backup takes over, this primary becomes its backup.",
        discussion: """
            Run on the primary. It takes a final checkpoint with the guest paused, waits for the \
            backup's acknowledgement, and hands the VM over; protection restarts in the other \
            direction by itself (a full resynchronisation).
            """)

    @OptionGroup var options: ConfigOptions

    func run() throws { try options.send("switchover") }
}
