import Foundation
import Logging

/// The agent's log handler: swift-log's stream format for people, JSON lines for machines, at
/// the level of a shared `LogLevelControl`.
public struct AgentLogHandler: LogHandler {
    /// Without `--log-level` or `log.level`.
    public static let defaultLevel = Logger.Level.warning

    private let label: String
    private let format: LogFormat
    private let control: LogLevelControl
    /// The human format is swift-log's own; it is asked to print everything that passes here.
    private var human: StreamLogHandler
    public var metadata: Logger.Metadata = [:]

    public init(label: String, format: LogFormat, control: LogLevelControl) {
        self.label = label
        self.format = format.resolved
        self.control = control
        human = StreamLogHandler.standardError(label: label)
        human.logLevel = .trace
    }

    /// Installs the handler for the whole process (once) and returns the agent's logger.
    public static func bootstrap(format: LogFormat, control: LogLevelControl) -> Logger {
        LoggingSystem.bootstrap { label in AgentLogHandler(label: label, format: format, control: control) }
        return Logger(label: "understudy")
    }

    public var logLevel: Logger.Level {
        get { control.level }
        set { control.level = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        guard format == .json else { return human.log(event: withMetadata(event)) }
        let merged = withMetadata(event).metadata ?? [:]
        let line = Array((Self.jsonLine(level: event.level, label: label, message: "\(event.message)", metadata: merged,
                                        source: event.source) + "\n").utf8)
        // One write per record, so that records from several threads never interleave.
        _ = line.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }

    /// The event with this handler's metadata under its own.
    private func withMetadata(_ event: LogEvent) -> LogEvent {
        guard !metadata.isEmpty else { return event }
        var event = event
        event.metadata = event.metadata.map { metadata.merging($0) { _, new in new } } ?? metadata
        return event
    }

    /// How a JSON line writes its time (UTC, milliseconds); it parses them back too.
    public static let timeStyle = Date.ISO8601FormatStyle.iso8601.year().month().day().dateSeparator(.dash)
        .time(includingFractionalSeconds: true).timeSeparator(.colon).timeZone(separator: .omitted)

    /// One log record as a JSON object (keys sorted, so that lines are stable to read and test).
    public static func jsonLine(level: Logger.Level, label: String, message: String, metadata: Logger.Metadata, source: String,
                         time: Date = Date()) -> String {
        var record: [String: Any] = [
            "time": time.formatted(timeStyle),
            "level": level.rawValue, "label": label, "message": message, "source": source,
        ]
        if !metadata.isEmpty { record["metadata"] = metadata.mapValues(Self.plain) }
        guard let data = try? JSONSerialization.data(withJSONObject: record, options: [.sortedKeys, .withoutEscapingSlashes]) else {
            return "{\"level\":\"\(level.rawValue)\",\"message\":\"(unencodable log record)\"}"
        }
        return String(decoding: data, as: UTF8.self)
    }

    private static func plain(_ value: Logger.Metadata.Value) -> Any {
        switch value {
        case .string(let text): text
        case .stringConvertible(let convertible): convertible.description
        case .array(let values): values.map(plain)
        case .dictionary(let values): values.mapValues(plain)
        }
    }
}
