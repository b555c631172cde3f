import Testing
import UnderstudyProtocol

@Suite struct AcknowledgementProgressMonitorTests {
    let start = ContinuousClock.now

    func at(_ milliseconds: Int) -> ContinuousClock.Instant { start + .milliseconds(milliseconds) }

    func seen(inFlight: Int, acked: UInt64?, written: Int = 0, queued: Int = 0) -> AcknowledgementProgressMonitor.Observation {
        .init(inFlight: inFlight, acknowledgedThrough: acked, bytesWritten: written, framesQueued: queued)
    }

    @Test func aBackupThatStopsAcknowledgingIsLostOnceAfterTheTimeout() {
        var monitor = AcknowledgementProgressMonitor(timeout: .seconds(3), now: at(0))
        #expect(monitor.poll(seen(inFlight: 4, acked: 7), now: at(0)) == nil)
        // Heartbeats still flow into the idle connection: the byte count grows, nothing is queued.
        #expect(monitor.poll(seen(inFlight: 4, acked: 7, written: 100), now: at(2_999)) == nil)
        #expect(monitor.poll(seen(inFlight: 4, acked: 7, written: 200), now: at(3_000)) == .seconds(3))
        #expect(monitor.isStalled)
        #expect(monitor.poll(seen(inFlight: 4, acked: 7, written: 300), now: at(9_000)) == nil, "reported once")
    }

    @Test func advancingAcknowledgementsKeepTheSessionAlive() {
        var monitor = AcknowledgementProgressMonitor(timeout: .seconds(3), now: at(0))
        for step in 0..<20 {
            #expect(monitor.poll(seen(inFlight: 4, acked: UInt64(step)), now: at(step * 2_000)) == nil)
        }
        #expect(!monitor.isStalled)
    }

    @Test func nothingInFlightIsNeverAStallAndTheClockStartsWhenCheckpointsAreSent() {
        var monitor = AcknowledgementProgressMonitor(timeout: .seconds(3), now: at(0))
        #expect(monitor.poll(seen(inFlight: 0, acked: nil), now: at(60_000)) == nil)
        #expect(monitor.poll(seen(inFlight: 1, acked: nil), now: at(60_010)) == nil)
        #expect(monitor.poll(seen(inFlight: 1, acked: nil), now: at(62_999)) == nil)
        #expect(monitor.poll(seen(inFlight: 1, acked: nil), now: at(63_000)) == .seconds(3))
    }

    @Test func aLongTransferThatKeepsTheLinkBusyIsProgress() {
        var monitor = AcknowledgementProgressMonitor(timeout: .seconds(3), now: at(0))
        for step in 0..<30 {
            #expect(monitor.poll(seen(inFlight: 1, acked: 5, written: step * 1_000_000, queued: 16), now: at(step * 1_000)) == nil)
        }
        // The backup stops reading: frames stay queued and the byte count stands still.
        #expect(monitor.poll(seen(inFlight: 1, acked: 5, written: 29_000_000, queued: 16), now: at(31_999)) == nil)
        #expect(monitor.poll(seen(inFlight: 1, acked: 5, written: 29_000_000, queued: 16), now: at(32_000)) == .seconds(3))
    }
}
