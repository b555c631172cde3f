#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import UnderstudySystem

@Suite("IdlePriority")
struct IdlePriorityTests {
    /// The body, and a process it starts, run under SCHED_IDLE; the thread gets its own policy back.
    @Test func theBodyAndItsChildrenRunIdleAndTheThreadIsRestored() throws {
        let policy = sched_getscheduler(0)
        let (inside, child) = try IdlePriority.run { () throws -> (Int32, String) in
            // /proc/self/sched's "policy" line is the child's own: 5 is SCHED_IDLE.
            let output = try HostCommand.run(["sh", "-c", "grep '^policy' /proc/self/sched"])
            return (sched_getscheduler(0), output)
        }
        #expect(inside == 5, "SCHED_IDLE")
        #expect(child.hasSuffix(" 5"), "\(child)")
        #expect(sched_getscheduler(0) == policy)
    }
}
