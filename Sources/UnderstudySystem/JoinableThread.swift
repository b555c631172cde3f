import CUnderstudyShims
#if canImport(Glibc)
import Glibc
#endif

/// A dedicated OS thread for blocking work (socket I/O, the checkpoint loop), kept off Swift's
/// cooperative pool so that a blocking call never starves async tasks and latency stays predictable.
public final class JoinableThread: @unchecked Sendable {
    private var thread = pthread_t()
    private var joined = false

    /// Starts `body` on a new thread named `name` (at most 15 characters show in tools like top).
    public init(name: String, _ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(ThreadBody(name: name, body: body))
        let result = pthread_create(&thread, nil, { raw in
            let body = Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue()
            us_set_thread_name(body.name)
            body.body()
            return nil
        }, box.toOpaque())
        precondition(result == 0, "pthread_create failed: \(result)")
    }

    /// Waits for the thread to finish. Call at most once, never from the thread itself.
    public func join() {
        precondition(!joined, "thread joined twice")
        joined = true
        pthread_join(thread, nil)
    }

    deinit {
        if !joined { pthread_detach(thread) }
    }
}

extension JoinableThread {
    private final class ThreadBody {
        let name: String
        let body: @Sendable () -> Void
        init(name: String, body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }
}
