#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import UnderstudySystem

@Suite("SpawnedProcess")
struct SpawnedProcessTests {
    func finish(_ process: SpawnedProcess) -> Int32? {
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if let status = process.exitStatus() { return status }
            Thread.sleep(forTimeInterval: 0.01)
        }
        return nil
    }

    /// The exit is seen when the program exits, although a program it started still runs (and
    /// that one is killed with it); the status and the environment are the program's.
    @Test func itsExitIsSeenAtOnceAndItsGroupGoesWithIt() throws {
        let marker = "/tmp/understudy-spawned-\(UUID().uuidString.prefix(8))"
        defer { unlink(marker) }
        let started = ContinuousClock.now
        let process = try SpawnedProcess(executable: "/bin/sh", arguments: ["sh", "-c", "sleep 30 & echo $! > \(marker); exit $CODE"],
                                         environment: ["CODE": "7", "PATH": "/usr/bin:/bin"])
        #expect(finish(process) == 7)
        #expect(ContinuousClock.now - started < .seconds(20), "not held until the background sleep ends")
        let sleeper = try #require(Int32(try String(contentsOfFile: marker, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        let gone = ContinuousClock.now + .seconds(5)
        while kill(sleeper, 0) == 0, ContinuousClock.now < gone { Thread.sleep(forTimeInterval: 0.01) }
        #expect(kill(sleeper, 0) != 0, "the group's leftover was killed")
    }

    /// A caller that ignores SIGTERM (as `StopSignal` makes the agent do) still stops the program with it.
    @Test func signalsTheCallerIgnoresReachTheProgram() throws {
        let previous = signal(SIGTERM, SIG_IGN)
        defer { signal(SIGTERM, previous) }
        let process = try SpawnedProcess(executable: "/bin/sleep", arguments: ["sleep", "30"], environment: [:])
        Thread.sleep(forTimeInterval: 0.1)
        process.signalGroup(SIGTERM)
        #expect(finish(process) == 128 + SIGTERM)
    }
}
