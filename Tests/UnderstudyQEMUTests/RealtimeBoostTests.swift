import Foundation
import Logging
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import UnderstudyQEMU

@Suite("Real-time priority for the pause")
struct RealtimeBoostTests {
    private static func scheduling(_ thread: pid_t) -> (policy: Int32, priority: Int32) {
        var parameters = sched_param()
        _ = sched_getparam(thread, &parameters)
        return (sched_getscheduler(thread), parameters.sched_priority)
    }

    @Test func theCallerAndTheGivenThreadsAreBoostedOnlyWhileTheBodyRuns() throws {
        // Needs CAP_SYS_NICE, which the test machine's root has.
        guard geteuid() == 0 else { return }
        let other = Process()
        other.executableURL = URL(fileURLWithPath: "/bin/sleep")
        other.arguments = ["30"]
        try other.run()
        defer {
            kill(other.processIdentifier, SIGKILL)
            other.waitUntilExit()
        }
        let thread = other.processIdentifier
        let before = (Self.scheduling(0), Self.scheduling(thread))
        #expect(before.0.policy == SCHED_OTHER && before.1.policy == SCHED_OTHER)

        let boost = RealtimeBoost(priority: 7, logger: Logger(label: "test"))
        let inside = boost.during(threads: [thread]) { (Self.scheduling(0), Self.scheduling(thread)) }
        #expect(inside.0.policy == SCHED_FIFO && inside.0.priority == 7)
        #expect(inside.1.policy == SCHED_FIFO && inside.1.priority == 7)
        let after = (Self.scheduling(0), Self.scheduling(thread))
        #expect(after.0 == before.0 && after.1 == before.1, "both threads get their own scheduling back")

        struct Failed: Error {}
        #expect(throws: Failed.self) { try boost.during(threads: [thread]) { throw Failed() } }
        #expect(Self.scheduling(0) == before.0, "restored when the body throws too")

        let hold = boost.begin(threads: [])
        #expect(boost.during(threads: [thread]) { Self.scheduling(thread).policy } == SCHED_FIFO)
        #expect(Self.scheduling(0).policy == SCHED_FIFO && Self.scheduling(thread) == before.1,
                "a boost inside a hold leaves the caller boosted, and gives the other thread its own back")
        hold.end()
        #expect(Self.scheduling(0) == before.0, "ending the hold gives the caller its own back")
        hold.end()
        #expect(Self.scheduling(0) == before.0, "ending it again changes nothing")

        let off = RealtimeBoost(priority: 0, logger: Logger(label: "test"))
        #expect(off.during(threads: [thread]) { Self.scheduling(0) } == before.0, "priority 0 changes nothing")
    }
}
