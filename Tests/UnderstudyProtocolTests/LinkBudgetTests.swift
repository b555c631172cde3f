import Testing
@testable import UnderstudyProtocol

/// The link budget on an injected clock and invented counters: no socket, no link.
@Suite("LinkBudget")
struct LinkBudgetTests {
    static let t0 = ContinuousClock.now

    static func about(_ value: Double?, _ expected: Double) -> Bool {
        guard let value else { return false }
        return abs(value - expected) <= expected * 1e-9
    }

    @Test("with nothing measured the budget is the cap, or unknown without one")
    func capOnly() {
        var capped = LinkBudget(cap: 2_000_000, now: Self.t0)
        #expect(capped.budget == 2_000_000)
        #expect(capped.update(senderBytes: 0, senderBusy: .zero, acknowledgedBytes: 0, backpressure: false,
                              now: Self.t0 + .milliseconds(10)) == 2_000_000)
        var open = LinkBudget(cap: nil, now: Self.t0)
        #expect(open.budget == nil)
        #expect(open.update(senderBytes: 0, senderBusy: .zero, acknowledgedBytes: 0, backpressure: false,
                            now: Self.t0 + .seconds(1)) == nil)
    }

    @Test("the sender's throughput counts bytes over busy time from where checkpoints started, once it was busy long enough")
    func senderThroughput() {
        var link = LinkBudget(cap: nil, now: Self.t0)
        // The initial sync wrote 50 MB in 10 s: no sample of the checkpoints' link.
        link.senderStarted(bytes: 50_000_000, busy: .seconds(10))
        // 100 KB in 100 ms busy: 1 MB/s.
        #expect(Self.about(link.update(senderBytes: 50_100_000, senderBusy: .milliseconds(10_100), acknowledgedBytes: 0,
                                       backpressure: false, now: Self.t0 + .milliseconds(100)), 1_000_000))
        // 10 ms busy says nothing: the measurement stands, and the next one starts where the last did.
        #expect(Self.about(link.update(senderBytes: 50_110_000, senderBusy: .milliseconds(10_110), acknowledgedBytes: 0,
                                       backpressure: false, now: Self.t0 + .milliseconds(200)), 1_000_000))
        // 10 ms more: 20 KB in 20 ms, 1 MB/s... then a slower stretch replaces it.
        #expect(Self.about(link.update(senderBytes: 50_120_000, senderBusy: .milliseconds(10_120), acknowledgedBytes: 0,
                                       backpressure: false, now: Self.t0 + .milliseconds(300)), 1_000_000))
        #expect(Self.about(link.update(senderBytes: 50_130_000, senderBusy: .milliseconds(10_170), acknowledgedBytes: 0,
                                       backpressure: false, now: Self.t0 + .milliseconds(400)), 200_000))
        #expect(Self.about(link.senderThroughput, 200_000))
        #expect(link.acknowledgedThroughput == nil)
    }

    @Test("the budget is the lowest of the cap and the measurements")
    func lowestLimit() {
        var link = LinkBudget(cap: 500_000, now: Self.t0)
        // The sender managed 1 MB/s: the cap is lower.
        #expect(link.update(senderBytes: 100_000, senderBusy: .milliseconds(100), acknowledgedBytes: 0, backpressure: false,
                            now: Self.t0 + .milliseconds(100)) == 500_000)
        // Now 100 KB/s.
        #expect(Self.about(link.update(senderBytes: 110_000, senderBusy: .milliseconds(200), acknowledgedBytes: 0, backpressure: false,
                                       now: Self.t0 + .milliseconds(200)), 100_000))
    }

    @Test("acknowledgements under backpressure show the link's pace; it stands after the backpressure and only rises")
    func acknowledgedThroughput() {
        var link = LinkBudget(cap: nil, now: Self.t0)
        // Acknowledgements without backpressure say nothing: the window, not the link, set their pace.
        #expect(link.update(senderBytes: 0, senderBusy: .zero, acknowledgedBytes: 300_000, backpressure: false,
                            now: Self.t0 + .milliseconds(500)) == nil)
        // A span of at least 500 ms in which the window was full once: 1 MB acknowledged in 1 s.
        #expect(link.update(senderBytes: 0, senderBusy: .zero, acknowledgedBytes: 500_000, backpressure: true,
                            now: Self.t0 + .milliseconds(700)) == nil, "a span shorter than 500 ms is not counted yet")
        #expect(Self.about(link.update(senderBytes: 0, senderBusy: .zero, acknowledgedBytes: 1_300_000, backpressure: false,
                                       now: Self.t0 + .milliseconds(1_500)), 1_000_000))
        // The backpressure ended (the interval stretched): a slower span does not lower the measurement...
        #expect(Self.about(link.update(senderBytes: 0, senderBusy: .zero, acknowledgedBytes: 1_400_000, backpressure: false,
                                       now: Self.t0 + .milliseconds(2_500)), 1_000_000))
        // ...a faster one raises it.
        #expect(Self.about(link.update(senderBytes: 0, senderBusy: .zero, acknowledgedBytes: 3_400_000, backpressure: true,
                                       now: Self.t0 + .milliseconds(3_500)), 2_000_000))
        // The span that began with backpressure (flagged by the update that opened it) measures
        // the link again, lower this time.
        #expect(Self.about(link.update(senderBytes: 0, senderBusy: .zero, acknowledgedBytes: 3_900_000, backpressure: false,
                                       now: Self.t0 + .milliseconds(4_500)), 500_000))
        // Backpressure with nothing acknowledged is a stall, not a rate: the measurement stands.
        _ = link.update(senderBytes: 0, senderBusy: .zero, acknowledgedBytes: 3_900_000, backpressure: true,
                        now: Self.t0 + .milliseconds(4_600))
        #expect(Self.about(link.update(senderBytes: 0, senderBusy: .zero, acknowledgedBytes: 3_900_000, backpressure: false,
                                       now: Self.t0 + .milliseconds(5_500)), 500_000))
        #expect(link.senderThroughput == nil)
    }
}
