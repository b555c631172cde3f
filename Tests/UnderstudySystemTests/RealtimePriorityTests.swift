import Testing
import UnderstudySystem
#if canImport(Glibc)
import Glibc
#endif

@Suite("RealtimePriority (the heartbeat threads' scheduling)")
struct RealtimePriorityTests {
    /// Root (as the tests run) may use SCHED_FIFO; the thread gets exactly the heartbeat priority
    /// and other threads keep theirs.
    @Test("a heartbeat thread runs under SCHED_FIFO at the heartbeat priority")
    func raisesOnlyTheCallingThread() {
        final class Seen: @unchecked Sendable { var result: (errno: Int32, policy: Int32, priority: Int32) = (-1, -1, -1) }
        let seen = Seen()
        let thread = JoinableThread(name: "rt-test") {
            let error = RealtimePriority.raiseCurrentThread()
            var parameters = sched_param()
            sched_getparam(0, &parameters)
            seen.result = (error, sched_getscheduler(0), parameters.sched_priority)
        }
        thread.join()
        #expect(seen.result.errno == 0 || seen.result.errno == EPERM)
        if seen.result.errno == 0 {
            #expect(seen.result.policy == SCHED_FIFO && seen.result.priority == RealtimePriority.heartbeat)
        }
        #expect(sched_getscheduler(0) == SCHED_OTHER, "the test's own thread is untouched")
    }
}
