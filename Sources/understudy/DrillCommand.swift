import ArgumentParser
import Foundation
import UnderstudyAgent

struct DrillCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drill",
        abstract: "Rehearse a failover: start a clone from the replica in a sandbox, probe it, report, destroy it.",
        discussion: """
            Run it on the backup, with or without the backup agent running: the replica at its last committed \
            checkpoint is copied (the agent pauses applying checkpoints for as long as the copy takes), a clone of \
            the VM starts from the copy with its disk as a copy-on-write overlay and its NIC only in a private \
            network namespace, and the probe (tcp:HOST:PORT from inside that namespace, exec:COMMAND run by the \
            shell inside that namespace until it exits with 0, or serial:MARKER on the clone's console) decides whether it recovered. Reports the recovery time and the age of the recovered \
            state, then removes the clone and everything it used. The primary and its protection are undisturbed. \
            Exits with 1 when the probe failed.
            """)

    @OptionGroup var options: ConfigOptions
    @OptionGroup var log: LogOptions

    @Option(name: .long, help: "The health probe: tcp:HOST:PORT, exec:COMMAND or serial:MARKER (default: drill.probe).")
    var probe: String?

    @Option(name: .long, help: "Seconds from starting the clone to a successful probe (default: drill.timeout_s, or 60).")
    var timeout: Int?

    @Flag(name: .long, help: "Print the report as JSON.")
    var json = false

    func validate() throws {
        if let timeout, !(1...3600).contains(timeout) { throw ValidationError("--timeout must be 1 to 3600 seconds") }
    }

    func run() throws {
        let logger = log.bootstrap()
        let configuration = try options.load()
        let chosen: DrillProbe
        if let probe {
            do {
                chosen = try DrillProbe(parsing: probe)
            } catch {
                throw ValidationError("--probe: \(error)")
            }
        } else if let configured = configuration.drill.probe {
            chosen = configured
        } else {
            throw ValidationError("no probe: give --probe or set drill.probe in \(configuration.source)")
        }
        let report = try Drill.run(configuration: configuration, probe: chosen,
                                   timeout: timeout.map { .seconds($0) } ?? configuration.drill.timeout, stop: StopSignal(), logger: logger)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            encoder.keyEncodingStrategy = .convertToSnakeCase
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(report.humanReadable)
        }
        if !report.ok { throw ExitCode.failure }
    }
}

extension DrillReport {
    var humanReadable: String {
        func milliseconds(_ value: Double?) -> String { value.map { String(format: "%.0f ms", $0) } ?? "-" }
        return """
            drill of \(vm): \(ok ? "PASSED" : "FAILED")
              recovered state   checkpoint \(epoch), \(milliseconds(stateAgeMs)) old when copied (from the \(snapshotFrom))
              replica paused    \(String(format: "%.1f ms", replicaPausedMs))\(diskCopy.map { " (disk: \($0) copy)" } ?? "")
              clone running     \(milliseconds(timeToRunningMs)) after start
              recovery time     \(milliseconds(recoveryMs)) (start to \(probe) answering)
              sandbox           \(sandbox): \(sandboxFramesFromClone) frames from the clone, \(sandboxFramesToClone) to it; removed
              \(message)
            """
    }
}
