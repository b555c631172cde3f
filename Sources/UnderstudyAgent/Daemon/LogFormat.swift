import Foundation

/// How the agent writes its log to standard error.
public enum LogFormat: String, Sendable, CaseIterable {
    /// Human lines on a terminal, JSON lines otherwise (journald, a file).
    case auto
    case human
    /// One JSON object per line: time, level, label, message, metadata.
    case json

    /// `auto` resolved for this process's standard error.
    public var resolved: LogFormat {
        guard self == .auto else { return self }
        return isatty(STDERR_FILENO) != 0 ? .human : .json
    }
}
