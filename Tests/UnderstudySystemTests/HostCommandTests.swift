import Testing
import UnderstudySystem

@Suite("HostCommand")
struct HostCommandTests {
    @Test("execute returns the status and both outputs, whatever the status")
    func execute() throws {
        let result = try HostCommand.execute("/bin/sh", ["-c", "echo out; echo err >&2; exit 3"])
        #expect(result.status == 3)
        #expect(result.stdout == "out\n")
        #expect(result.stderr == "err\n")
    }

    @Test("run finds the program on PATH and returns its output trimmed")
    func run() throws {
        #expect(try HostCommand.run(["echo", " hello "]) == "hello")
    }

    @Test("run throws with the command and what it printed when it fails")
    func runFailure() {
        #expect {
            try HostCommand.run(["sh", "-c", "echo nope >&2; exit 1"])
        } throws: { error in
            "\(error)".contains("exit 1") && "\(error)".contains("nope")
        }
    }

    @Test("a program that cannot start is a failure, not a status")
    func missingExecutable() {
        #expect(throws: HostCommand.Failure.self) { try HostCommand.execute("/nonexistent/program", []) }
    }

    @Test("a chatty program fills neither pipe")
    func largeOutputs() throws {
        let result = try HostCommand.execute("/bin/sh", ["-c", "head -c 300000 /dev/zero | tr '\\\\0' e >&2; head -c 300000 /dev/zero"])
        #expect(result.status == 0)
        #expect(result.stdout.utf8.count == 300_000)
        #expect(result.stderr.utf8.count == 300_000)
    }
}
