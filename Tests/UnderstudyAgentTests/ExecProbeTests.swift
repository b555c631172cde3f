import Foundation
import Testing
@testable import UnderstudyAgent
import UnderstudyHarness
import UnderstudySystem

/// The `exec:COMMAND` drill probe: its parsing, and real commands run the way a drill runs them
/// (here in the test's own namespace; the drill's thread enters the sandbox's first).
@Suite("Drill exec probe")
struct ExecProbeTests {
    @Test func execProbesParseAndEmptyCommandsAreRefused() throws {
        #expect(try DrillProbe(parsing: "exec:pg_isready -h 10.0.0.5") == .exec(command: "pg_isready -h 10.0.0.5"))
        #expect(try DrillProbe(parsing: "exec: psql -tAc 'select 1'") == .exec(command: "psql -tAc 'select 1'"))
        #expect(DrillProbe.exec(command: "pg_isready -h 10.0.0.5").description == "exec:pg_isready -h 10.0.0.5")
        for text in ["exec:", "exec:   "] {
            #expect { try DrillProbe(parsing: text) } throws: { "\($0)".contains("no command after exec:") }
        }
        #expect { try DrillProbe(parsing: "run:true") } throws: { "\($0)".contains("exec:COMMAND") }
        let base = "[node]\nname = \"b\"\ncertificates = \"/c\"\n[peer]\nname = \"p\"\n[vm]\nid = \"v\"\nmemory_mib = 64\nkernel = \"/k\"\n[drill]\n"
        let configured = try AgentConfiguration(document: TOMLDocument(parsing: base + "probe = \"exec:pg_isready -h 10.0.0.5\"\n", source: "x.toml"))
        #expect(configured.drill.probe == .exec(command: "pg_isready -h 10.0.0.5"))
        do {
            _ = try AgentConfiguration(document: TOMLDocument(parsing: base + "probe = \"exec:\"\n", source: "bad.toml"))
            Issue.record("accepted an empty exec probe")
        } catch {
            #expect(error.key == "drill.probe")
        }
    }

    @Test func aCommandThatKeepsFailingIsReportedWithItsExitStatusAndOutput() throws {
        try withTemporaryDirectory("exec-probe") { directory in
            let probe = ExecProbe(command: "echo 'could not connect to server: Connection refused' >&2; exit 2", outputFile: "\(directory)/out")
            let failure = probe.run(deadline: .now + .milliseconds(600), timeout: .milliseconds(600), stop: StopSignal(signals: []))
            let reason = try #require(failure, "a command exiting with 2 passed")
            #expect(reason.contains("did not succeed within"), "\(reason)")
            #expect(reason.contains("exit 2: could not connect to server: Connection refused"), "\(reason)")
        }
    }

    @Test func theProbePassesOnceTheCommandExitsWithZero() throws {
        try withTemporaryDirectory("exec-probe") { directory in
            // Fails twice, then succeeds: as a database that is still recovering would.
            let command = "n=$(cat \(directory)/tries 2>/dev/null || echo 0); n=$((n+1)); echo $n > \(directory)/tries; [ $n -ge 3 ]"
            let probe = ExecProbe(command: command, outputFile: "\(directory)/out")
            #expect(probe.run(deadline: .now + .seconds(60), timeout: .seconds(60), stop: StopSignal(signals: [])) == nil)
            let tries = try String(contentsOfFile: "\(directory)/tries", encoding: .utf8)
            #expect(tries.trimmingCharacters(in: .whitespacesAndNewlines) == "3")
        }
    }

    /// A passing command's background children must not outlive the try either: they would keep
    /// the drill's namespace alive (`SpawnedProcess` kills the group before it reaps the command).
    @Test func whatAPassingTryLeftInTheBackgroundIsKilled() throws {
        try withTemporaryDirectory("exec-probe") { directory in
            let probe = ExecProbe(command: "sleep 60 > /dev/null 2>&1 & echo started $!", outputFile: "\(directory)/out")
            let attempt = probe.attempt(until: .now + .seconds(30), stop: StopSignal(signals: []))
            guard case .exited(0, let output) = attempt else {
                Issue.record("did not pass: \(attempt)")
                return
            }
            let pid = try #require(output.split(separator: " ").last.flatMap { pid_t($0) }, "\(output)")
            let dead = eventually {
                guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
                return stat.split(separator: ")").last?.split(separator: " ").first == "Z"
            }
            if !dead { kill(pid, SIGKILL) }
            #expect(dead, "the command's background child \(pid) outlived the try")
        }
    }

    @Test func aHangingTryIsKilledWithEverythingItStarted() throws {
        try withTemporaryDirectory("exec-probe") { directory in
            var probe = ExecProbe(command: "sleep 60 & echo started $!; wait", outputFile: "\(directory)/out")
            probe.attemptLimit = .milliseconds(300)
            let attempt = probe.attempt(until: .now + probe.attemptLimit, stop: StopSignal(signals: []))
            guard case .killed(_, let output) = attempt else {
                Issue.record("not killed: \(attempt)")
                return
            }
            let pid = try #require(output.split(separator: " ").last.flatMap { pid_t($0) }, "\(output)")
            // Dead: gone, or a zombie waiting for whoever inherited it.
            let dead = eventually {
                guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
                return stat.split(separator: ")").last?.split(separator: " ").first == "Z"
            }
            #expect(dead, "the command's child \(pid) outlived the try")
            #expect(attempt.description.hasPrefix("still running after"), "\(attempt)")
            // A stop ends the probe (and its try) at once.
            let stop = StopSignal(signals: [])
            stop.trigger(.requested(nil))
            #expect(probe.run(deadline: .now + .seconds(60), timeout: .seconds(60), stop: stop)?.contains("drill stopped") == true)
        }
    }
}
