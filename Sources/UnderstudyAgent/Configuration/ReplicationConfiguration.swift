import Foundation
import UnderstudyProtocol

/// The `[replication]` keys for thin and long links: protection mode, recovery-point objective,
/// bandwidth cap, adaptive interval, catch-up after a lost link. (The table's other keys,
/// `interval_ms`, `max_epochs_in_flight` and `dirty_tracking`, are read by `AgentConfiguration`.)
///
/// ```toml
/// [replication]
/// mode = "asynchronous"                 # synchronous (output commit) | asynchronous (DR replica)
/// rpo_ms = 5000                         # asynchronous: the replica may lag this much; more raises an alert
/// throttle_guest = false                # asynchronous: over the objective, pause the guest briefly between checkpoints
/// interval_max_ms = 2000                # the interval adapts between interval_ms and this to fit the link
/// bandwidth_limit = "20Mbit"            # cap on the replication stream: bytes/s, or a number with kbit/Mbit/Gbit/KB/MB/GB
/// catch_up_journal = "/var/lib/understudy/web-1/catch-up.journal"  # disk writes kept while the link is down
/// catch_up_journal_mib = 256            # past this the next connection resynchronises in full; 0: always resync
/// compression = "lz4"                   # lz4 | lz4hc | lz4hc:1..12: high compression, fewer bytes for more CPU
/// output_triggered = true               # output waiting in the gate ends the epoch early (interval_ms is the longest)
/// min_gap_ms = 1                        # the guest runs at least this long between a checkpoint and an output-triggered one
/// max_checkpoints_per_second = 500      # output-triggered checkpoints start at most this often
/// ```
public struct ReplicationConfiguration: Sendable, Equatable {
    public var mode: ProtectionMode
    public var recoveryPointObjective: Duration
    public var throttleGuest: Bool
    /// The longest interval the adaptive interval may choose; nil: the interval is fixed.
    public var maximumInterval: Duration?
    /// Bytes per second; nil: no cap.
    public var bandwidthLimit: Int?
    public var catchUpJournal: String
    /// Bytes; 0: no catch-up.
    public var catchUpJournalLimit: Int
    /// How pages and disk writes are compressed (the decoder is the same for all).
    public var compression: CompressionMode
    /// Whether and how often output waiting in the gate ends the open epoch early.
    public var schedule: CheckpointSchedule.Policy

    /// The highest `bandwidth_limit`, in bytes per second (8 Tbit/s): above any link, and far below
    /// where the conversion to an integer, or the rate arithmetic downstream, could overflow.
    static let maximumBandwidth = 1_000_000_000_000

    static let knownKeys: Set<String> = [
        "replication.mode", "replication.rpo_ms", "replication.throttle_guest", "replication.interval_max_ms",
        "replication.bandwidth_limit", "replication.catch_up_journal", "replication.catch_up_journal_mib", "replication.compression",
        "replication.output_triggered", "replication.min_gap_ms", "replication.max_checkpoints_per_second",
    ]

    init(document d: TOMLDocument, interval: Duration, stateDirectory: String) throws(ConfigurationError) {
        mode = try d.oneOf("replication.mode", ProtectionMode.self) ?? .synchronous
        recoveryPointObjective = .milliseconds(try d.integer("replication.rpo_ms", in: 1...86_400_000) ?? 5000)
        throttleGuest = try d.bool("replication.throttle_guest") ?? false
        if mode == .synchronous {
            for key in ["replication.rpo_ms", "replication.throttle_guest"] where d.value(key) != nil {
                throw ConfigurationError(source: d.source, line: d.line(of: key), key: key,
                                         message: "only applies with mode = \"asynchronous\" (synchronous mode holds output instead)")
            }
        }
        maximumInterval = try d.integer("replication.interval_max_ms", in: 1...600_000).map { .milliseconds($0) }
        if let maximumInterval, maximumInterval < interval {
            throw ConfigurationError(source: d.source, line: d.line(of: "replication.interval_max_ms"), key: "replication.interval_max_ms",
                                     message: "\(maximumInterval.wholeMilliseconds) ms is shorter than interval_ms (\(interval.wholeMilliseconds) ms), the shortest interval")
        }
        bandwidthLimit = try Self.bandwidth(d, "replication.bandwidth_limit")
        catchUpJournal = try d.string("replication.catch_up_journal") ?? "\(stateDirectory)/catch-up.journal"
        catchUpJournalLimit = Int(try d.integer("replication.catch_up_journal_mib", in: 0...1_048_576) ?? 256) << 20
        let compressionText = try d.string("replication.compression") ?? "lz4"
        guard let compression = CompressionMode(compressionText) else {
            throw ConfigurationError(source: d.source, line: d.line(of: "replication.compression"), key: "replication.compression",
                                     message: "\"\(compressionText)\" is not lz4, lz4hc or lz4hc:LEVEL (LEVEL 1 to 12)")
        }
        self.compression = compression
        let defaults = CheckpointSchedule.Policy.default
        schedule = CheckpointSchedule.Policy(
            outputTriggered: try d.bool("replication.output_triggered") ?? defaults.outputTriggered,
            minimumGap: try d.integer("replication.min_gap_ms", in: 0...60_000).map { .milliseconds($0) } ?? defaults.minimumGap,
            maximumRate: Int(try d.integer("replication.max_checkpoints_per_second", in: 1...10_000) ?? Int64(defaults.maximumRate)))
    }

    /// Parses a bandwidth: an integer of bytes per second, or a string with a unit (per second):
    /// bits (`kbit`, `Mbit`, `Gbit`) or bytes (`KB`, `MB`, `GB`, decimal). Either must lie between
    /// 1 KB/s and `maximumBandwidth`, checked before the conversion to an integer, which would trap.
    static func bandwidth(_ d: TOMLDocument, _ key: String) throws(ConfigurationError) -> Int? {
        guard let value = d.value(key) else { return nil }
        let fail = { (message: String) in ConfigurationError(source: d.source, line: d.line(of: key), key: key, message: message) }
        let tooHigh = "is above \(maximumBandwidth) bytes/s (8 Tbit/s), more than any link carries"
        if case .integer(let bytes) = value {
            guard bytes >= 1024 else { throw fail("\(bytes) bytes/s is below 1 KB/s") }
            guard bytes <= maximumBandwidth else { throw fail("\(bytes) bytes/s \(tooHigh)") }
            return Int(bytes)
        }
        guard let text = try d.string(key) else { return nil }
        guard let bytes = parseBandwidth(text)?.rounded() else {
            throw fail("\"\(text)\" is not a bandwidth: write bytes per second (20000000) or a number with a unit (\"20Mbit\", \"2.5MB\")")
        }
        guard bytes >= 1024 else { throw fail("\"\(text)\" is below 1 KB/s") }
        guard bytes <= Double(maximumBandwidth) else { throw fail("\"\(text)\" \(tooHigh)") }
        return Int(bytes)
    }

    /// Bytes per second of `"20Mbit"`, `"2.5MB"`, `"800kbit"`…, not rounded and possibly beyond
    /// any integer (`"1e20MB"`, or infinite: `"1e308GB"`); nil when it is not a positive bandwidth.
    static func parseBandwidth(_ text: String) -> Double? {
        let units: [(String, Double)] = [("kbit", 1e3 / 8), ("Mbit", 1e6 / 8), ("Gbit", 1e9 / 8), ("KB", 1e3), ("MB", 1e6), ("GB", 1e9)]
        let trimmed = text.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "/s", with: "")
        for (unit, factor) in units where trimmed.hasSuffix(unit) {
            guard let number = Double(trimmed.dropLast(unit.count).trimmingCharacters(in: .whitespaces)), number > 0, number.isFinite else {
                return nil
            }
            return number * factor
        }
        return nil
    }
}
