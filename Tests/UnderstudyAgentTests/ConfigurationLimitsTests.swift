import Foundation
import Logging
import Testing
@testable import UnderstudyAgent

/// What no configuration may do, however wrong: trap the agent (at start or at SIGHUP), or be
/// accepted with a number outside what the setting can mean.
@Suite("Configuration limits")
struct ConfigurationLimitsTests {
    /// A minimal valid node, as dotted key → TOML literal; asynchronous so that the keys that only
    /// apply in that mode are read (and range-checked) too.
    private static let base: [(key: String, value: String)] = [
        ("node.name", "\"a\""), ("node.certificates", "\"/c\""), ("peer.name", "\"b\""),
        ("vm.id", "\"web-1\""), ("vm.memory_mib", "64"), ("vm.kernel", "\"/k\""),
        ("replication.mode", "\"asynchronous\""),
    ]

    /// The base document with `key` set to `value` (replacing the base's), one table after the
    /// other, and the line the key is on.
    private static func document(setting key: String, to value: String) -> (text: String, line: Int) {
        var settings = base.filter { $0.key != key }
        settings.append((key, value))
        var tables: [String: [(String, String)]] = [:]
        var order: [String] = []
        for (dotted, literal) in settings {
            let dot = dotted.lastIndex(of: ".")!
            let table = String(dotted[..<dot])
            if tables[table] == nil { order.append(table) }
            tables[table, default: []].append((String(dotted[dotted.index(after: dot)...]), literal))
        }
        var lines: [String] = []
        var line = 0
        for table in order {
            lines.append("[\(table)]")
            for (name, literal) in tables[table]! {
                lines.append("\(name) = \(literal)")
                if "\(table).\(name)" == key { line = lines.count }
            }
        }
        return (lines.joined(separator: "\n"), line)
    }

    private static func error(_ text: String) -> ConfigurationError? {
        do {
            _ = try AgentConfiguration(document: TOMLDocument(parsing: text, source: "agent.toml"))
            return nil
        } catch {
            return error
        }
    }

    private static var everyKey: [String] {
        AgentConfiguration.knownKeys.union(DrillConfiguration.knownKeys).union(ReplicationConfiguration.knownKeys).sorted()
    }

    @Test func theBaseDocumentIsValid() {
        #expect(Self.error(Self.document(setting: "vm.vcpus", to: "2").text) == nil)
    }

    /// Every key, numeric or not: no setting takes a number this far out, so each must refuse it
    /// with an error naming the key and its line (a string key for the wrong kind, a numeric key
    /// for its range).
    @Test(arguments: ["9223372036854775807", "-9223372036854775808", "-1", "1e300"])
    func everyKeyRefusesAnAbsurdNumberNamingTheKeyAndLine(_ value: String) {
        for key in Self.everyKey {
            let (text, line) = Self.document(setting: key, to: value)
            let error = Self.error(text)
            #expect(error?.key == key && error?.line == line, "\(key) = \(value): \(String(describing: error))")
        }
    }

    /// `Int((number * factor).rounded())` trapped on these: at start, or in a running agent at SIGHUP.
    @Test(arguments: ["1e20MB", "1e300Gbit", "9223372036854775807KB", "9e15Gbit", "1e308GB", "2000GB"])
    func aBandwidthBeyondAnyLinkIsAnErrorNamingTheKey(_ text: String) {
        let (document, line) = Self.document(setting: "replication.bandwidth_limit", to: "\"\(text)\"")
        let error = Self.error(document)
        #expect(error?.key == "replication.bandwidth_limit" && error?.line == line, "\(String(describing: error))")
        #expect(error?.message.contains("above") == true, "\(String(describing: error))")
    }

    /// The crash the issue reported: a running agent re-reading its file at SIGHUP.
    @Test func aReloadWithAnAbsurdBandwidthIsReportedAndChangesNothing() throws {
        let path = NSTemporaryDirectory() + "understudy-limits-\(UUID().uuidString.prefix(8)).toml"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Self.document(setting: "log.level", to: "\"warning\"").text.write(toFile: path, atomically: true, encoding: .utf8)
        let levels = LogLevelControl(.warning)
        let reloader = ConfigurationReloader(path: path, loaded: try TOMLDocument(contentsOfFile: path), levels: levels, levelOverride: nil,
                                             logger: Logger(label: "test"))
        let (text, line) = Self.document(setting: "replication.bandwidth_limit", to: "\"1e20MB\"")
        try (text + "\n[log]\nlevel = \"debug\"").write(toFile: path, atomically: true, encoding: .utf8)
        let outcome = reloader.reload()
        #expect(outcome.error?.contains("\(path):\(line): replication.bandwidth_limit") == true, "\(outcome.error ?? "no error")")
        #expect(outcome.applied.isEmpty && levels.level == .warning, "an invalid file changes nothing")
    }

    /// The acknowledgement-progress timeout reaches the primary, defaults to a few seconds, and a
    /// value it cannot mean is refused naming the key.
    @Test func theAcknowledgementTimeoutIsReadAndRangeChecked() throws {
        let defaults = try AgentConfiguration(document: TOMLDocument(parsing: Self.document(setting: "vm.vcpus", to: "2").text, source: "agent.toml"))
        #expect(defaults.failover.acknowledgementTimeout == .seconds(5))
        let (text, _) = Self.document(setting: "failover.ack_timeout_ms", to: "1500")
        let configuration = try AgentConfiguration(document: TOMLDocument(parsing: text, source: "agent.toml"))
        #expect(configuration.failover.acknowledgementTimeout == .milliseconds(1500))
        for value in ["0", "99", "3600001"] {
            let (text, line) = Self.document(setting: "failover.ack_timeout_ms", to: value)
            let error = Self.error(text)
            #expect(error?.key == "failover.ack_timeout_ms" && error?.line == line, "\(value): \(String(describing: error))")
        }
    }

    @Test func theLargestBandwidthIsAccepted() throws {
        let limit = ReplicationConfiguration.maximumBandwidth
        for literal in ["\(limit)", "\"\(limit / 1_000_000_000)GB\"", "\"\(limit * 8 / 1_000_000_000)Gbit\""] {
            let (text, _) = Self.document(setting: "replication.bandwidth_limit", to: literal)
            let configuration = try AgentConfiguration(document: TOMLDocument(parsing: text, source: "agent.toml"))
            #expect(configuration.replication.bandwidthLimit == limit, "\(literal)")
        }
        let (text, _) = Self.document(setting: "replication.bandwidth_limit", to: "\(limit + 1)")
        #expect(Self.error(text)?.key == "replication.bandwidth_limit")
    }

    /// A value of a million '[' recursed once per bracket and overflowed the stack.
    @Test func deeplyNestedArraysAreAnErrorNotAStackOverflow() throws {
        let depth = TOMLDocument.Parser.maximumArrayDepth
        let deepest = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
        #expect(try TOMLDocument(parsing: "# x\na = \(deepest)", source: "agent.toml").value("a") != nil)
        for count in [depth + 1, 1_000_000] {
            let text = "# x\na = " + String(repeating: "[", count: count) + String(repeating: "]", count: count)
            #expect {
                _ = try TOMLDocument(parsing: text, source: "agent.toml")
            } throws: { error in
                guard let error = error as? ConfigurationError else { return false }
                return error.key == "a" && error.line == 2 && error.message.contains("nested deeper than \(depth)")
            }
        }
    }
}
