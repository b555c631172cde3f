import Foundation
import Logging

/// Keeps every log message, for tests that check what an operator would see.
public final class LogCapture: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []

    public init() {}

    public var logger: Logger {
        Logger(label: "test") { _ in Handler(capture: self) }
    }

    public var messages: [String] {
        lock.lock()
        defer { lock.unlock() }
        return lines
    }

    /// Waits until `count` messages containing `text` have been logged.
    public func waitFor(_ text: String, count: Int = 1, seconds: Double = 5) -> Bool {
        let deadline = Date(timeIntervalSinceNow: seconds)
        while Date() < deadline {
            if messages.filter({ $0.contains(text) }).count >= count { return true }
            usleep(10_000)
        }
        return false
    }

    private func append(_ line: String) {
        lock.lock()
        lines.append(line)
        lock.unlock()
    }

    private struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let extra = event.metadata
            let (level, message) = (event.level, event.message)
            let all = metadata.merging(extra ?? [:]) { $1 }
            let rendered = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            capture.append("\(level) \(message) \(rendered)")
        }
    }
}
