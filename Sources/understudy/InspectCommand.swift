import ArgumentParser
import Foundation
import UnderstudyAgent

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Run a command (a virus scan, an integrity check) on the replica's disk, mounted read-only on the backup.",
        discussion: """
            Run it on the backup, with or without the backup agent running: the replica at its last committed \
            checkpoint is copied as for a drill (the agent pauses applying checkpoints for as long as the copy takes), \
            the disk copy's filesystems are mounted read-only (a whole-disk filesystem on DIR, partition N on DIR/pN), \
            and COMMAND runs with DIR in place of each argument that is exactly {} or, with none, as its last argument. \
            Its environment has UNDERSTUDY_INSPECT_DIR, UNDERSTUDY_INSPECT_DISK (the raw disk copy, a file), \
            UNDERSTUDY_INSPECT_EPOCH, UNDERSTUDY_INSPECT_AGE_MS and, with --memory, UNDERSTUDY_INSPECT_MEMORY (the \
            checkpoint's memory image, raw guest-physical memory). Then everything is removed, also when interrupted. \
            The primary is never touched. Exits with COMMAND's status; 125 when the inspection could not run, 127 when \
            COMMAND is not found. Needs root (loop devices, mounts).
            """)

    @OptionGroup var options: ConfigOptions
    @OptionGroup var log: LogOptions

    @Flag(name: .long, help: "Also expose the checkpoint's memory image (its path in UNDERSTUDY_INSPECT_MEMORY).")
    var memory = false

    @Flag(name: .long, help: "Print the report as JSON (on standard output, after COMMAND's own output).")
    var json = false

    @Option(name: .long, help: "Stop COMMAND after this many seconds (default: no limit).")
    var timeout: Int?

    @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.")
    var command: [String] = []

    func validate() throws {
        guard InspectionCommand(command) != nil else { throw ValidationError("give the command to run after --, e.g. -- clamscan -r") }
        if let timeout, !(1...86_400).contains(timeout) { throw ValidationError("--timeout must be 1 to 86400 seconds") }
    }

    func run() throws {
        let logger = log.bootstrap()
        let configuration = try options.load()
        let stop = StopSignal()
        let report: InspectionReport
        do {
            report = try Inspection.run(configuration: configuration, command: InspectionCommand(command)!, memory: memory,
                                        timeout: timeout.map { .seconds($0) }, stop: stop, logger: logger)
        } catch {
            FileHandle.standardError.write(Data("understudy inspect: \(error)\n".utf8))
            throw ExitCode((error as? InspectionError)?.kind == .commandNotFound ? 127 : 125)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            encoder.keyEncodingStrategy = .convertToSnakeCase
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            // Standard error: standard output is the command's.
            FileHandle.standardError.write(Data((report.humanReadable + "\n").utf8))
        }
        throw ExitCode(report.exitStatus ?? 125)
    }
}

extension InspectionReport {
    var humanReadable: String {
        """
        inspection of \(vm): \(ok ? "command succeeded" : "command FAILED")
          checkpoint        \(epoch.map { "\($0)" } ?? "-"), \(stateAgeMs.map { String(format: "%.0f ms", $0) } ?? "-") old when copied\(snapshotFrom.map { " (from the \($0))" } ?? "")
          replica paused    \(replicaPausedMs.map { String(format: "%.1f ms", $0) } ?? "-") (copy: \(snapshotMs.map { String(format: "%.0f ms", $0) } ?? "-"))
          filesystems       \(filesystems.isEmpty ? "-" : filesystems.joined(separator: ", "))\(memoryImage.map { "\n  memory image      \($0)" } ?? "")
          command           \(command): exit \(exitStatus.map { "\($0)" } ?? "-"), \(String(format: "%.0f ms", durationMs)) in all; removed
          \(message)
        """
    }
}
