import ArgumentParser
import Foundation
import UnderstudyAgent
import UnderstudyHarness

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Protect a real Linux VM on this machine, run a drill, kill the primary, watch the backup take over.",
        discussion: """
            Boots the test guest (Deploy/guest: the Debian cloud kernel and a TCP counter service on an ext4 disk) \
            under a primary agent and protects it to a backup agent, both started from this binary with generated \
            configurations and throw-away certificates; network namespaces stand in for the two hosts and for a \
            client that keeps one TCP connection to the guest. Shows live checkpoint statistics, runs a failover \
            drill, kills the primary (agent and QEMU, SIGKILL) and shows the backup taking over with the client's \
            connection going on, nothing lost or repeated. Needs root and ./Deploy/install.sh; removes everything \
            it made when it ends, also on SIGINT or SIGTERM. Exits with 1 when the failover lost anything the \
            client had received or the client got no reply after it.

            --fleet runs a fleet instead: a three-member etcd cluster, four hosts (agent processes on loopback), \
            two counter guests and a spare host; it kills an etcd member, then a backup host, then a primary host \
            (its backup takes over), times how long until the spare protects each VM again, restarts the lost hosts \
            and checks that they stand down, that no VM ever had two primaries and that the clients lost nothing. Needs /usr/bin/etcd (Debian's etcd-server) too.

            --synthetic runs the earlier demo instead: a synthetic guest's memory streamed between two agents on \
            loopback, printing throughput, and the replica checked against the guest byte for byte.
            """)

    @Option(name: .long, help: "Seconds of protection shown live before the drill (default 15; 10 with --synthetic: seconds of checkpointing).")
    var seconds: Double?

    @Flag(name: .long, help: "A short run (3 s of protection), e.g. for tests.")
    var short = false

    @Flag(name: .long, help: "Print the final report as JSON (progress goes to standard error).")
    var json = false

    @Flag(name: .long, help: "Keep the working directory (configurations, agent logs, disks).")
    var keep = false

    @Flag(name: .long, help: "The synthetic-guest throughput demo instead of the real VM.")
    var synthetic = false

    @Flag(name: .long, help: "The fleet demo: two VMs on four hosts with a spare; an etcd member, a backup host and a primary host killed.")
    var fleet = false

    @Option(name: .long, help: "With --synthetic: guest memory in MiB (default 256).")
    var memoryMib: UInt64?

    @Option(name: .long, help: "With --synthetic: pages the guest dirties per checkpoint (default 2000).")
    var pagesPerCheckpoint: Int?

    @Option(name: .long, help: "With --synthetic: page contents, comma-separated: text, random, sparseUpdate, zero, binary.")
    var mix: String?

    @Option(name: .long, help: "With --synthetic: checkpoint interval in milliseconds (0, the default: back to back).")
    var intervalMs: Int?

    @OptionGroup var log: LogOptions

    func validate() throws {
        guard !(fleet && synthetic) else { throw ValidationError("give --fleet or --synthetic, not both") }
        guard !(fleet && (seconds != nil || short)) else { throw ValidationError("--seconds and --short do not apply to --fleet") }
        if let seconds { guard seconds > 0 && seconds <= 3600 else { throw ValidationError("--seconds must be between 0 and 3600") } }
        guard !(short && seconds != nil) else { throw ValidationError("give --short or --seconds, not both") }
        if synthetic {
            guard !keep else { throw ValidationError("--keep applies to the real-VM demo, not --synthetic") }
            if let memoryMib { guard memoryMib >= 1 && memoryMib <= 65536 else { throw ValidationError("--memory-mib must be 1 to 65536") } }
            if let pagesPerCheckpoint { guard pagesPerCheckpoint >= 0 else { throw ValidationError("--pages-per-checkpoint must not be negative") } }
            if let intervalMs { guard intervalMs >= 0 else { throw ValidationError("--interval-ms must not be negative") } }
            _ = try parsedMix()
        } else {
            let given = [("--memory-mib", memoryMib != nil), ("--pages-per-checkpoint", pagesPerCheckpoint != nil), ("--mix", mix != nil),
                         ("--interval-ms", intervalMs != nil)].filter(\.1).map(\.0)
            guard given.isEmpty else { throw ValidationError("\(given.joined(separator: ", ")): only with --synthetic") }
        }
    }

    private func parsedMix() throws -> [SyntheticContent] {
        try (mix ?? "text,binary,sparseUpdate,zero").split(separator: ",").map { name in
            guard let content = SyntheticContent(rawValue: String(name)) else {
                throw ValidationError("unknown content \"\(name)\" in --mix (choose from \(SyntheticContent.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            return content
        }
    }

    func run() throws {
        if synthetic { return try runSynthetic() }
        if fleet { return try runFleet() }
        let logger = log.bootstrap()
        let stop = StopSignal()
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var options = VMDemo.Options(executable: executable, guestDirectory: VMDemo.guestDirectory())
        options.protectedSeconds = short ? 3 : seconds ?? 15
        options.keep = keep
        let quiet = json
        let demo = VMDemo(options: options, stop: stop, logger: logger) { line in
            if quiet {
                FileHandle.standardError.write(Data((line + "\n").utf8))
            } else {
                print(line)
                fflush(nil)
            }
        }
        let report: DemoReport
        do {
            report = try demo.run()
        } catch {
            FileHandle.standardError.write(Data("understudy demo: \(error)\n".utf8))
            throw ExitCode.failure
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            encoder.keyEncodingStrategy = .convertToSnakeCase
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(report.humanReadable)
        }
        if !report.ok { throw ExitCode.failure }
    }

    private func runFleet() throws {
        _ = log.bootstrap()
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var options = FleetScenario.Options(executable: executable, guestDirectory: VMDemo.guestDirectory())
        options.keep = keep
        let quiet = json
        let scenario = FleetScenario(options: options, stop: StopSignal()) { line in
            if quiet {
                FileHandle.standardError.write(Data((line + "\n").utf8))
            } else {
                print(line)
                fflush(nil)
            }
        }
        let report: FleetReport
        do {
            report = try scenario.run()
        } catch {
            FileHandle.standardError.write(Data("understudy demo --fleet: \(error)\n".utf8))
            throw ExitCode.failure
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            encoder.keyEncodingStrategy = .convertToSnakeCase
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(report.humanReadable)
        }
        if !report.ok { throw ExitCode.failure }
    }

    private func runSynthetic() throws {
        let logger = log.bootstrap()
        var options = SyntheticRun.Options()
        options.memoryBytes = (memoryMib ?? 256) << 20
        options.pagesPerCheckpoint = pagesPerCheckpoint ?? 2000
        options.mix = try parsedMix()
        options.duration = .milliseconds(Int((short ? 3 : seconds ?? 10) * 1000))
        options.interval = .milliseconds(intervalMs ?? 0)
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

extension DemoReport {
    var humanReadable: String {
        func milliseconds(_ value: Double?) -> String { value.map { String(format: "%.0f ms", $0) } ?? "-" }
        let survivor = survivorCounter.map { "counter \($0) in memory; " + (survivorDiskAgrees == true ? "its disk file ends at the same value" : "its disk file DISAGREES") }
        return """

            summary
              protection        \(checkpoints) checkpoints (\(String(format: "%.1f", checkpointsPerSecond))/s), pause p50 \(String(format: "%.1f", pauseMsP50)) ms, \
            p99 \(String(format: "%.1f", pauseMsP99)) ms, max \(String(format: "%.1f", pauseMsMax)) ms, \(String(format: "%.0f", dirtyPagesPerCheckpoint)) dirty pages per checkpoint, \
            \(String(format: "%.1f", Double(wireBytes) / 1e6)) MB on the wire for \(String(format: "%.1f", Double(rawBytes) / 1e6)) MB of pages
              drill             \(drillOk ? "passed" : "FAILED"): recovery \(milliseconds(drillRecoveryMs)), recovered state \(milliseconds(drillStateAgeMs)) old
              failover          heartbeat timeout \(milliseconds(heartbeatTimeoutMs)), \(falseAlarms) false takeover alarms and \(backupLostBeforeKill) sessions lost before the kill; \
            the client's next reply on its connection \(milliseconds(failoverMs)) after the kill: detection \(milliseconds(failoverBreakdown?.detectionMs)), \
            fence \(milliseconds(failoverBreakdown?.fenceMs)), activation \(milliseconds(failoverBreakdown?.activationMs)), \
            resumed VM to the reply \(milliseconds(failoverBreakdown?.resumeToReplyMs))
              round trip        p50 \(milliseconds(roundTripProtectedMsP50)) protected, \(milliseconds(roundTripUnprotectedMsP50)) unprotected \
            (the survivor), added \(milliseconds(roundTripAddedMsP50))
              client            \(connectionSurvived ? "the same TCP connection throughout" : "connection NOT kept"): \(clientRepliesBeforeKill) replies before \
            the kill (last \(lastValueBeforeKill.map { "\($0)" } ?? "-")), \(clientRepliesAfterFailover) after (first \(firstValueAfterFailover.map { "\($0)" } ?? "-"))
              lost output       \(lostAcknowledgedOutput) values the client had received
              survivor          \(survivor ?? "did not answer")
            \(ok ? "PASSED" : "FAILED"): \(message)
            """
    }
}
