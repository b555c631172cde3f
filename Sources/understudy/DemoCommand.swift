import ArgumentParser
import Foundation
import UnderstudyAgent

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run a primary and a backup agent on this machine and show replication live.",
        discussion: """
            Creates throw-away certificates, starts a backup agent and a primary agent on loopback, \
            runs the initial sync and then streams checkpoints of a synthetic guest over mutual TLS, \
            printing throughput each second. At the end it checks that the backup's replica equals the \
            guest's memory byte for byte.
            """)

    @Option(name: .long, help: "Guest memory in MiB.")
    var memoryMib: UInt64 = 256

    @Option(name: .long, help: "Pages the guest dirties per checkpoint.")
    var pagesPerCheckpoint: Int = 2000

    @Option(name: .long, help: "Page contents, comma-separated: text, random, sparseUpdate, zero, binary.")
    var mix: String = "text,binary,sparseUpdate,zero"

    @Option(name: .long, help: "Seconds of checkpointing after the initial sync.")
    var seconds: Double = 10

    @Option(name: .long, help: "Checkpoint interval in milliseconds (0: back to back).")
    var intervalMs: Int = 0

    @Flag(name: .long, help: "Print the final report as JSON.")
    var json = false

    @OptionGroup var log: LogOptions

    func validate() throws {
        guard memoryMib >= 1 && memoryMib <= 65536 else { throw ValidationError("--memory-mib must be 1 to 65536") }
        guard pagesPerCheckpoint >= 0 else { throw ValidationError("--pages-per-checkpoint must not be negative") }
        guard seconds > 0 else { throw ValidationError("--seconds must be positive") }
        guard intervalMs >= 0 else { throw ValidationError("--interval-ms must not be negative") }
        _ = try parsedMix()
    }

    private func parsedMix() throws -> [SyntheticContent] {
        try mix.split(separator: ",").map { name in
            guard let content = SyntheticContent(rawValue: String(name)) else {
                throw ValidationError("unknown content \"\(name)\" in --mix (choose from \(SyntheticContent.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            return content
        }
    }

    func run() throws {
        let logger = log.bootstrap()
        var options = SyntheticRun.Options()
        options.memoryBytes = memoryMib << 20
        options.pagesPerEpoch = pagesPerCheckpoint
        options.mix = try parsedMix()
        options.duration = .milliseconds(Int(seconds * 1000))
        options.interval = .milliseconds(intervalMs)
        let quiet = json
        let report = try SyntheticRun(options: options).run(logger: logger) { line in
            if !quiet { print(line) }
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(String(format: """
                done: %d checkpoints in %.1f s (%.0f/s), %.1f MB/s of dirty pages, %.1f MB/s on the wire (%.2fx smaller)
                ack latency p50 %.2f ms, p99 %.2f ms; backup committed epoch %d
                replica equals primary memory: %@
                """, report.checkpoints, report.seconds, report.checkpointsPerSecond, report.rawMegabytesPerSecond,
                report.wireMegabytesPerSecond, report.compressionRatio, report.ackLatencyMillisecondsP50,
                report.ackLatencyMillisecondsP99, report.backupCommittedEpoch, report.replicaMatchesPrimary ? "yes" : "NO"))
        }
        if !report.replicaMatchesPrimary { throw ExitCode(2) }
    }
}
