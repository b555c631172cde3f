import ArgumentParser
import UnderstudyAgent

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Print the version and protocol version.")

    func run() {
        print(UnderstudyVersion.summary)
    }
}
