import CUnderstudyShims
#if canImport(Glibc)
import Glibc
#endif

/// Running code inside a named network namespace (`ip netns add NAME`, bound under
/// /var/run/netns): the one way the demo, the drill, the benchmarks and the tests do it.
///
/// Entering changes the calling thread for good, so it happens only on a thread made for it
/// (`run`, or a `Thread`/`JoinableThread` of the caller's own), never on a shared pool thread.
public enum NetworkNamespace {
    /// Moves the calling thread into namespace `name`: sockets it opens from now on are there.
    public static func enter(_ name: String) throws(TransportError) {
        guard us_enter_network_namespace("/var/run/netns/\(name)") == 0 else {
            throw .system(operation: "entering network namespace \(name)", errno: errno)
        }
    }

    /// Runs `body` on a new thread named `thread` inside namespace `name` and returns its result
    /// once that thread finished.
    public static func run<Result: Sendable>(in name: String, thread: String,
                                             _ body: @escaping @Sendable () throws -> Result) throws -> Result {
        let outcome = Outcome<Result>()
        JoinableThread(name: thread) {
            outcome.value = Swift.Result {
                try enter(name)
                return try body()
            }
        }.join()
        return try outcome.value!.get()
    }
}

extension NetworkNamespace {
    /// The namespace thread's result, read after it was joined.
    private final class Outcome<Value: Sendable>: @unchecked Sendable {
        var value: Result<Value, any Error>?
    }
}
