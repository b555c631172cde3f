/// What pgbench printed at the end of a run, and its per-transaction log (`--log`): the
/// figures the `--pgbench` benchmark reports.
public struct PGBenchOutput: Sendable, Equatable {
    public var tps: Double
    public var latencyMillisecondsAverage: Double
    public var transactions: Int
    public var failedTransactions: Int

    /// Parses pgbench 15's summary; nil when a figure is missing (pgbench failed or was cut off).
    public init?(summary text: String) {
        var tps: Double?, latency: Double?, transactions: Int?
        var failed = 0
        for line in text.split(whereSeparator: \.isNewline).map({ $0.trimmingCharacters(in: .whitespaces) }) {
            // "tps = 63.812 (without initial connection time)"
            if line.hasPrefix("tps = ") { tps = Self.number(after: "tps = ", in: line) }
            // "latency average = 62.686 ms"
            if line.hasPrefix("latency average = ") { latency = Self.number(after: "latency average = ", in: line) }
            // "number of transactions actually processed: 1915" (pgbench 15 adds "/1915" with -t)
            if line.hasPrefix("number of transactions actually processed: ") {
                transactions = Self.number(after: "number of transactions actually processed: ", in: line).map { Int($0) }
            }
            // "number of failed transactions: 0 (0.000%)"
            if line.hasPrefix("number of failed transactions: ") {
                failed = Self.number(after: "number of failed transactions: ", in: line).map { Int($0) } ?? 0
            }
        }
        guard let tps, let latency, let transactions else { return nil }
        self.tps = tps
        latencyMillisecondsAverage = latency
        self.transactions = transactions
        failedTransactions = failed
    }

    /// The latencies, in milliseconds, of a per-transaction log: one line per transaction,
    /// `client transaction latency_us script epoch_s epoch_us` (failed ones carry `failed` or
    /// `skipped` instead of a latency and are left out).
    public static func latenciesMilliseconds(log text: String) -> [Double] {
        text.split(whereSeparator: \.isNewline).compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count >= 3, let microseconds = Double(fields[2]) else { return nil }
            return microseconds / 1000
        }
    }

    private static func number(after prefix: String, in line: String) -> Double? {
        let rest = line.dropFirst(prefix.count)
        return Double(rest.prefix { $0.isNumber || $0 == "." })
    }
}
