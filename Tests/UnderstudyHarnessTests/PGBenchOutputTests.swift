import Testing
import UnderstudyHarness

@Suite("PGBenchOutput (pgbench 15's summary and per-transaction log)")
struct PGBenchOutputTests {
    static let summary = """
        pgbench (15.13 (Debian 15.13-0+deb12u1))
        transaction type: <builtin: TPC-B (sort of)>
        scaling factor: 5
        query mode: simple
        number of clients: 4
        number of threads: 2
        maximum number of tries: 1
        duration: 30 s
        number of transactions actually processed: 1915
        number of failed transactions: 2 (0.104%)
        latency average = 62.686 ms
        initial connection time = 12.345 ms
        tps = 63.810662 (without initial connection time)

        """

    @Test("the summary's throughput, mean latency and transaction counts")
    func summary() throws {
        let output = try #require(PGBenchOutput(summary: Self.summary))
        #expect(output.tps == 63.810662)
        #expect(output.latencyMillisecondsAverage == 62.686)
        #expect(output.transactions == 1915)
        #expect(output.failedTransactions == 2)
    }

    @Test("a run cut off before its summary is no result")
    func incomplete() {
        let cutOff = Self.summary.split(separator: "\n").prefix(9).joined(separator: "\n")
        #expect(PGBenchOutput(summary: cutOff) == nil)
        #expect(PGBenchOutput(summary: "pgbench: error: connection to server at \"10.77.0.2\", port 5432 failed") == nil)
    }

    @Test("per-transaction latencies in milliseconds; failed transactions are left out")
    func log() {
        let text = """
            0 0 1520 0 1733440000 123456
            0 1 2480 0 1733440000 125999
            0 2 failed 0 1733440000 130000
            0 3 990 0 1733440000 131000

            """
        #expect(PGBenchOutput.latenciesMilliseconds(log: text) == [1.52, 2.48, 0.99])
    }
}
