import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Runs a short, latency-critical stretch (a checkpoint's pause) with the calling thread and
/// given other threads under SCHED_FIFO, then gives them back their own scheduling.
///
/// On a busy host a thread of the pause path that loses its core to another task for one time
/// slice stretches the guest's pause by milliseconds. Real-time priority only for the pause
/// (not for the encoding after it, which must not crowd out the running guest) bounds that.
/// Without the right to it (CAP_SYS_NICE), the first refusal is logged and boosting stops.
final class RealtimeBoost: Sendable {
    /// The SCHED_FIFO priority; 0 runs everything unchanged.
    let priority: Int32
    private let permitted = Atomic<Bool>(true)
    private let logger: Logger

    init(priority: Int32, logger: Logger) {
        self.priority = priority
        self.logger = logger
    }

    /// Runs `body` with the calling thread and `threads` (thread ids) boosted.
    func during<T>(threads: [pid_t], _ body: () throws -> T) rethrows -> T {
        guard priority > 0, permitted.load(ordering: .relaxed) else { return try body() }
        var boosted: [(thread: pid_t, policy: Int32, parameters: sched_param)] = []
        for thread in [0] + threads {
            var before = sched_param()
            let policy = sched_getscheduler(thread)
            guard policy >= 0, sched_getparam(thread, &before) == 0 else { continue }  // a thread that is gone
            var boost = sched_param(sched_priority: priority)
            if sched_setscheduler(thread, SCHED_FIFO, &boost) == 0 {
                boosted.append((thread, policy, before))
            } else if errno == EPERM, permitted.exchange(false, ordering: .relaxed) {
                logger.warning("checkpoint pauses run without real-time priority: not permitted (needs CAP_SYS_NICE); set vm.pause_priority = 0 to silence this")
            }
        }
        defer {
            for (thread, policy, parameters) in boosted.reversed() {
                var restored = parameters
                _ = sched_setscheduler(thread, policy, &restored)
            }
        }
        return try body()
    }
}
