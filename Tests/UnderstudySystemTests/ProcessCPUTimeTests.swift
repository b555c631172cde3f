import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import UnderstudySystem

@Suite("ProcessCPUTime (/proc/PID/stat)")
struct ProcessCPUTimeTests {
    @Test("utime plus stime, found after a command name with spaces and parentheses")
    func parse() throws {
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let stat = "4242 (qemu (x) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 \(Int(ticks * 3)) \(Int(ticks / 2)) 0 0 20 0 3 0 100 0 0"
        #expect(ProcessCPUTime.seconds(stat: stat) == 3.5)
        #expect(ProcessCPUTime.seconds(stat: "garbage") == nil)
    }

    @Test("this process has used CPU; a process that does not exist has none")
    func live() throws {
        var spin = 0.0
        for i in 0..<2_000_000 { spin += Double(i).squareRoot() }
        #expect(spin > 0)
        #expect((ProcessCPUTime.seconds(pid: getpid()) ?? 0) > 0)
        #expect(ProcessCPUTime.seconds(pid: Int32.max) == nil)
    }

    @Test("a thread's name is the stat file's command field")
    func threadName() {
        #expect(ProcessCPUTime.threadName(stat: "4242 (qemu (x) 1) S 1 4242") == "qemu (x) 1")
        #expect(ProcessCPUTime.threadName(stat: "garbage") == nil)
    }

    @Test("the CPU a named thread used shows under its name")
    func byThread() {
        let cpu = ProcessCPU.ByThread()
        let name = "cpu-test-\(getpid() % 1000)"
        let done = WaitableFlag()
        let spinner = JoinableThread(name: name) {
            var spin = 0.0
            while !done.isSet { for i in 0..<100_000 { spin += Double(i).squareRoot() } }
            #expect(spin > 0)
        }
        // Read while the thread still runs: an ended thread is not counted.
        let deadline = ContinuousClock.now + .seconds(30)
        var elapsed: [String: Double] = [:]
        while (elapsed[name] ?? 0) < 0.1, ContinuousClock.now < deadline {
            usleep(10_000)
            elapsed = cpu.elapsed
        }
        done.set(true)
        spinner.join()
        #expect((elapsed[name] ?? 0) >= 0.1)
        #expect((elapsed["no-such-thread"] ?? 0) == 0)
    }
}
