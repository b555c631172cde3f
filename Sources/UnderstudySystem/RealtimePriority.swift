#if canImport(Glibc)
import Glibc
#endif

/// Real-time scheduling for threads that must run the moment they wake although they do almost
/// no work: the heartbeat paths' senders and receivers. On a busy host (two TCG guests on two
/// cores, builds) a thread of ordinary priority can wait hundreds of milliseconds for a core, and
/// a heartbeat sent or noticed that late reads as a dead peer. SCHED_FIFO at a low priority runs
/// them ahead of every ordinary thread and behind the checkpoint pause's boost.
public enum RealtimePriority {
    /// The priority of the heartbeat threads (the pause's boost uses `vm.pause_priority`, higher).
    public static let heartbeat: Int32 = 1

    /// Puts the calling thread under SCHED_FIFO at `priority`. Returns 0, or the errno (EPERM
    /// without CAP_SYS_NICE: the thread then keeps its ordinary scheduling).
    @discardableResult
    public static func raiseCurrentThread(to priority: Int32 = heartbeat) -> Int32 {
        var parameters = sched_param(sched_priority: priority)
        return sched_setscheduler(0, SCHED_FIFO, &parameters) == 0 ? 0 : errno
    }
}
