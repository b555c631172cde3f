import Logging
import Synchronization

/// The log level every handler of the process reads at each message, so that SIGHUP can
/// change it while the agent runs.
public final class LogLevelControl: Sendable {
    private let index: Atomic<Int>

    public init(_ level: Logger.Level) {
        index = Atomic(Logger.Level.allCases.firstIndex(of: level)!)
    }

    public var level: Logger.Level {
        get { Logger.Level.allCases[index.load(ordering: .relaxed)] }
        set { index.store(Logger.Level.allCases.firstIndex(of: newValue)!, ordering: .relaxed) }
    }
}
