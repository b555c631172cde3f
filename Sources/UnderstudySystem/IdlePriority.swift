#if canImport(Glibc)
import Glibc
#endif

/// SCHED_IDLE for background work on a node that also runs a VM's replication: the thread runs only
/// when a core would otherwise be idle, so it cannot delay a checkpoint, an apply or a heartbeat.
/// Processes the thread starts inherit it (Linux copies the scheduling of the thread that forks).
public enum IdlePriority {
    /// Linux's SCHED_IDLE (<linux/sched.h>), which glibc declares only under _GNU_SOURCE.
    static let schedIdle: Int32 = 5

    /// Runs `body` with the calling thread under SCHED_IDLE, then gives the thread back its
    /// scheduling. Where the policy cannot be changed, `body` runs unchanged.
    public static func run<Result>(_ body: () throws -> Result) rethrows -> Result {
        let policy = sched_getscheduler(0)
        var saved = sched_param()
        let known = policy >= 0 && sched_getparam(0, &saved) == 0
        var idle = sched_param(sched_priority: 0)
        let lowered = known && sched_setscheduler(0, schedIdle, &idle) == 0
        defer { if lowered { _ = sched_setscheduler(0, policy, &saved) } }
        return try body()
    }
}
