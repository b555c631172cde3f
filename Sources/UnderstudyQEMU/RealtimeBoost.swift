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
/// slice stretches the guest's pause by milliseconds. Real-time priority for the pause bounds
/// that. The checkpoint loop's thread keeps it until a small checkpoint is queued (`begin`;
/// see `QEMUCheckpointSource.withCheckpointPriority`): giving it back makes the scheduler hand
/// the core to another task at once. A large checkpoint is encoded at the thread's own priority,
/// not to crowd out the running guest for long.
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

    /// Runs `body` with the calling thread and `threads` (thread ids) boosted. Inside another
    /// boost of the calling thread, it stays boosted afterwards.
    func during<T>(threads: [pid_t], _ body: () throws -> T) rethrows -> T {
        let hold = begin(threads: threads)
        defer { hold.end() }
        return try body()
    }

    /// Boosts the calling thread and `threads` until the hold ends, on the same thread.
    func begin(threads: [pid_t]) -> Hold {
        guard priority > 0, permitted.load(ordering: .relaxed) else { return Hold(boosted: []) }
        var boosted: [Hold.Boosted] = []
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
        return Hold(boosted: boosted)
    }

    /// Threads boosted by `begin`, each with the scheduling it had before.
    final class Hold {
        typealias Boosted = (thread: pid_t, policy: Int32, parameters: sched_param)
        private var boosted: [Boosted]

        fileprivate init(boosted: [Boosted]) { self.boosted = boosted }

        /// Gives the threads back their scheduling (once; later calls do nothing). On the thread
        /// that began the hold: thread id 0 is the calling thread.
        func end() {
            for (thread, policy, parameters) in boosted.reversed() {
                var restored = parameters
                _ = sched_setscheduler(thread, policy, &restored)
            }
            boosted = []
        }
    }
}
