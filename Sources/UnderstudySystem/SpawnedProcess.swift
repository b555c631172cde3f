import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A program started in a process group of its own and waited for with `waitpid`: for a command
/// the operator gives (`understudy inspect`), which may start programs of its own.
///
/// Foundation's `Process` notices an exit only when every descendant has closed a descriptor the
/// child inherited, so a command whose grandchild lingers would look alive; and a command started
/// by an agent that ignores SIGINT and SIGTERM (`StopSignal`) would inherit that. Here the child gets
/// default signal handling and an empty signal mask, stopping it signals its whole group, and
/// nothing of its group outlives it.
public final class SpawnedProcess: @unchecked Sendable {
    public let pid: pid_t
    private var status: Int32?

    /// Starts `executable` (a path) with `arguments` (the first is its name) and `environment`.
    /// - Parameter output: a file (created or emptied) that takes the program's standard output
    ///   and error, its input then empty; nil: it shares the caller's.
    public init(executable: String, arguments: [String], environment: [String: String],
                output: String? = nil) throws(HostCommand.Failure) {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let output {
            // A file, not a pipe: nothing has to drain it, and a grandchild holding it open cannot stall anyone.
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP))
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var child: pid_t = 0
        let result = posix_spawn(&child, executable, &actions, &attributes, argv, envp)
        guard result == 0 else { throw HostCommand.Failure("cannot run \(executable): \(String(cString: strerror(result)))") }
        pid = child
    }

    /// The exit status once the program has exited (128 + N when signal N ended it); nil while it
    /// runs. When it has exited, whatever it left running in its group is killed first (while its
    /// zombie still holds the group's number, so the signal cannot reach anyone else).
    public func exitStatus() -> Int32? {
        if let status { return status }
        var exited = siginfo_t()
        guard waitid(P_PID, id_t(pid), &exited, WEXITED | WNOHANG | WNOWAIT) == 0, exited._sifields._sigchld.si_pid == pid else { return nil }
        signalGroup(SIGKILL)
        var raw: Int32 = 0
        guard waitpid(pid, &raw, 0) == pid else { return nil }
        // WIFEXITED/WEXITSTATUS and WTERMSIG are macros Swift cannot import: the low 7 bits are the signal.
        let signal = raw & 0x7f
        status = signal == 0 ? (raw >> 8) & 0xff : 128 + signal
        return status
    }

    /// Sends `signal` to every process of the program's group (it and what it started).
    public func signalGroup(_ signal: Int32) {
        kill(-pid, signal)
    }
}
