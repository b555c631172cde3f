import Testing
import UnderstudyProtocol

@Suite struct HeartbeatMonitorTests {
    let start = ContinuousClock.now

    func poll(_ monitor: inout HeartbeatMonitor, _ now: ContinuousClock.Instant) -> HeartbeatMonitor.Decision { monitor.poll(now: now) }
    func heard(_ monitor: inout HeartbeatMonitor, _ now: ContinuousClock.Instant) -> Bool { monitor.heard(on: .replication, at: now) }

    func at(_ milliseconds: Int) -> ContinuousClock.Instant { start + .milliseconds(milliseconds) }

    @Test func theDefaultTimeoutIsFiveIntervalsAndAtLeast200Milliseconds() {
        #expect(HeartbeatMonitor.Configuration().timeout == .milliseconds(200))
        #expect(HeartbeatMonitor.Configuration(interval: .milliseconds(10)).timeout == .milliseconds(200))
        #expect(HeartbeatMonitor.Configuration(interval: .milliseconds(100)).timeout == .milliseconds(500))
        #expect(HeartbeatMonitor.Configuration(interval: .milliseconds(20), missedLimit: 5, minimumTimeout: .zero).timeout == .milliseconds(100))
    }

    @Test func aPeerHeardWithinTheTimeoutIsNeverLost() {
        var monitor = HeartbeatMonitor(now: at(0))
        for t in stride(from: 0, through: 5_000, by: 150) {
            monitor.heard(on: .replication, at: at(t))
            #expect(poll(&monitor, at(t + 149)).peerLost == nil)
        }
    }

    @Test func silenceOnEveryPathForTheTimeoutLosesThePeerOnce() {
        var monitor = HeartbeatMonitor(now: at(0))
        monitor.heard(on: .replication, at: at(100))
        #expect(poll(&monitor, at(299)).peerLost == nil)
        #expect(poll(&monitor, at(300)).peerLost == .milliseconds(200))
        #expect(monitor.isLost)
        #expect(poll(&monitor, at(900)).peerLost == nil, "reported once")
        #expect(heard(&monitor, at(1000)), "the peer is back")
        #expect(!monitor.isLost)
        #expect(poll(&monitor, at(1201)).peerLost != nil, "and can be lost again")
    }

    @Test func silenceIsCountedFromTheStartWhenNothingWasHeard() {
        var monitor = HeartbeatMonitor(now: at(0))
        #expect(poll(&monitor, at(199)).peerLost == nil)
        #expect(poll(&monitor, at(200)).peerLost == .milliseconds(200))
    }

    @Test func oneLivePathKeepsThePeerAlive() {
        var monitor = HeartbeatMonitor(now: at(0))
        monitor.heard(on: .replication, at: at(0))
        for t in stride(from: 0, through: 2_000, by: 40) {
            monitor.heard(on: .datagram, at: at(t))
            #expect(poll(&monitor, at(t + 39)).peerLost == nil)
        }
        #expect(monitor.silence(on: .replication, at: at(2_000)) == .milliseconds(2_000))
        #expect(monitor.silence(on: .datagram, at: at(2_000)) == .zero)
    }

    @Test func heartbeatsAreDueOnlyAfterAnIntervalWithoutSending() {
        var monitor = HeartbeatMonitor(now: at(0))
        #expect(poll(&monitor, at(0)).sendHeartbeat, "nothing sent yet")
        monitor.sent(at: at(0))
        #expect(!monitor.poll(now: at(39)).sendHeartbeat)
        #expect(poll(&monitor, at(40)).sendHeartbeat)
    }

    @Test func restartForgetsWhatWasHeard() {
        var monitor = HeartbeatMonitor(now: at(0))
        monitor.heard(on: .replication, at: at(0))
        _ = monitor.poll(now: at(500))
        monitor.restart(at: at(1_000))
        #expect(!monitor.isLost)
        #expect(poll(&monitor, at(1_199)).peerLost == nil)
        #expect(poll(&monitor, at(1_200)).peerLost != nil)
    }
}
