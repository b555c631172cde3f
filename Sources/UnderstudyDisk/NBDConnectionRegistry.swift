import Synchronization
import UnderstudySystem
#if canImport(Glibc)
import Glibc
#endif

/// The open connections of one server and their threads.
final class NBDConnectionRegistry: Sendable {
    private struct Entry {
        /// -1 once the connection's thread closed it.
        var fd: Int32
        /// nil until the accept thread has stored it (the connection may finish before that).
        var thread: JoinableThread?
        var finished = false
    }

    private struct State {
        var stopping = false
        var nextID = 1
        var entries: [Int: Entry] = [:]
    }

    private let state = Mutex(State())

    /// Registers an accepted connection; nil when the server is stopping.
    func add(_ fd: Int32) -> Int? {
        state.withLock { state in
            guard !state.stopping else { return nil }
            let id = state.nextID
            state.nextID += 1
            state.entries[id] = Entry(fd: fd)
            return id
        }
    }

    func started(_ id: Int, _ thread: JoinableThread) {
        state.withLock { $0.entries[id]?.thread = thread }
    }

    /// Called by the connection's own thread as its last act: closes its socket. Under the lock,
    /// so that `stopAll` never shuts down a descriptor number that was closed and reused.
    func finish(_ id: Int) {
        state.withLock { state in
            guard let fd = state.entries[id]?.fd, fd >= 0 else { return }
            close(fd)
            state.entries[id]?.fd = -1
            state.entries[id]?.finished = true
        }
    }

    /// Joins the threads of connections that ended, so a long-running server does not collect them.
    func reapFinished() {
        let done = state.withLock { state -> [JoinableThread] in
            let ids = state.entries.filter { $0.value.finished && $0.value.thread != nil }.map(\.key)
            return ids.compactMap { state.entries.removeValue(forKey: $0)?.thread }
        }
        for thread in done { thread.join() }
    }

    /// Shuts every open connection down and waits for its thread. Call after the accept thread
    /// has ended, so that no connection is added meanwhile.
    func stopAll() {
        let threads = state.withLock { state -> [JoinableThread] in
            state.stopping = true
            // shutdown, not close: the connection's thread wakes from its blocked read and
            // closes the descriptor itself, in `finish`.
            for entry in state.entries.values where entry.fd >= 0 { shutdown(entry.fd, Int32(SHUT_RDWR)) }
            return state.entries.values.compactMap(\.thread)
        }
        for thread in threads { thread.join() }
        state.withLock { $0.entries.removeAll() }
    }
}
