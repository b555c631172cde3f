import Testing
import UnderstudyWitness

private let t0 = ContinuousClock.now

private func at(_ milliseconds: Int) -> ContinuousClock.Instant { t0 + .milliseconds(milliseconds) }

private func term(_ number: UInt64, _ holder: String = "node-a") -> WitnessTerm { WitnessTerm(number: number, holder: holder) }

/// node-a's claim with `lease` when the term key holds `expected`.
private func claim(_ lease: Int64, expecting expected: WitnessTerm? = nil) -> WitnessLeaseStateMachine.Action {
    .sendClaim(lease: lease, expecting: expected, next: .next(after: expected, by: "node-a"))
}

/// A machine (TTL 2 s: margin 200 ms, renewal every 666 ms) holding lease 7 granted to a
/// request sent at t0.
private func holding(_ configuration: WitnessLeaseStateMachine.Configuration = .init()) -> WitnessLeaseStateMachine {
    var machine = WitnessLeaseStateMachine(configuration: configuration, node: "node-a", term: nil)
    _ = machine.start(at: t0, intent: .resume)
    _ = machine.granted(id: 7, ttl: .seconds(2), sentAt: t0)
    _ = machine.claimed(at: at(10))
    _ = machine.termRecorded(at: at(10))
    return machine
}

@Suite struct WitnessLeaseStateMachineTests {
    @Test func acquiringGrantsThenClaims() {
        var machine = WitnessLeaseStateMachine(configuration: .init(requestedTTL: .seconds(3)), node: "node-a", term: nil)
        #expect(machine.poll(t0) == .none, "nothing happens before start")
        #expect(machine.start(at: t0, intent: .resume) == .sendGrant(ttl: .seconds(3)))
        #expect(!machine.mayAct(t0))
        #expect(machine.granted(id: 7, ttl: .seconds(3), sentAt: t0) == claim(7))
        #expect(!machine.mayAct(at(5)), "a granted lease alone does not hold the key")
        #expect(machine.claimed(at: at(20)) == .recordTerm(term(1)), "the VM's first claim starts term 1")
        #expect(!machine.mayAct(at(20)), "not before the term is recorded")
        #expect(machine.termRecorded(at: at(20)) == .wait(until: at(1000)), "the first renewal is due a third of the TTL after the grant was sent")
        #expect(machine.mayAct(at(20)))
        #expect(machine.term == term(1))
    }

    @Test func validityIsCountedFromWhenTheGrantWasSentNotWhenTheReplyCame() {
        var machine = WitnessLeaseStateMachine(node: "node-a", term: nil)
        _ = machine.start(at: t0, intent: .resume)
        // The reply takes 1.5 s; etcd started counting somewhere in between.
        _ = machine.granted(id: 7, ttl: .seconds(2), sentAt: t0)
        _ = machine.claimed(at: at(1500))
        _ = machine.termRecorded(at: at(1500))
        #expect(machine.mayAct(at(1799)))
        #expect(!machine.mayAct(at(1800)), "2 s from the send, less the 200 ms margin; not 2 s from the reply")
        #expect(machine.lease?.validUntil == at(1800))
    }

    @Test func theDefaultMarginIsATenthOfTheTTLButAtLeast100Milliseconds() {
        let configuration = WitnessLeaseStateMachine.Configuration()
        #expect(configuration.margin(forTTL: .seconds(1)) == .milliseconds(100))
        #expect(configuration.margin(forTTL: .seconds(2)) == .milliseconds(200))
        #expect(configuration.margin(forTTL: .seconds(10)) == .seconds(1))
        #expect(WitnessLeaseStateMachine.Configuration(safetyMargin: .milliseconds(50)).margin(forTTL: .seconds(10)) == .milliseconds(50))

        var machine = WitnessLeaseStateMachine(node: "node-a", term: nil)
        _ = machine.start(at: t0, intent: .resume)
        _ = machine.granted(id: 1, ttl: .seconds(1), sentAt: t0)
        _ = machine.claimed(at: at(10))
        _ = machine.termRecorded(at: at(10))
        #expect(machine.mayAct(at(899)))
        #expect(!machine.mayAct(at(900)))
    }

    @Test func renewalsComeEveryThirdOfTheTTLAndExtendValidityFromTheirSendInstant() {
        var machine = holding()
        #expect(machine.poll(at(600)) == .wait(until: t0 + .seconds(2) / 3))
        #expect(machine.poll(at(667)) == .sendKeepAlive(lease: 7))
        // Sent at 667 ms, answered at 1.9 s: validity runs to 667 + 1800, not 1900 + 1800.
        #expect(machine.renewed(remaining: .seconds(2), sentAt: at(667)) == .wait(until: at(667) + .seconds(2) / 3))
        #expect(machine.mayAct(at(2466)))
        #expect(!machine.mayAct(at(2467)))
        #expect(machine.lease?.renewedAt == at(667))
    }

    @Test func aLateReplyToAnOlderKeepAliveDoesNotShortenValidity() {
        var machine = holding()
        _ = machine.renewed(remaining: .seconds(2), sentAt: at(1400))
        _ = machine.renewed(remaining: .seconds(2), sentAt: at(700))
        #expect(machine.lease?.validUntil == at(3200))
    }

    @Test func aShorterRenewedTTLShortensValidity() {
        var machine = holding()
        _ = machine.renewed(remaining: .seconds(1), sentAt: at(700))
        #expect(machine.lease?.validUntil == at(1600), "1 s from the send, less 100 ms")
    }

    @Test func failedKeepAlivesAreRetriedUntilTheLeaseCanNoLongerBeTrusted() {
        var machine = holding()
        #expect(machine.poll(at(700)) == .sendKeepAlive(lease: 7))
        #expect(machine.requestFailed("etcd at 127.0.0.1:2379 unreachable (connection refused)", at: at(700)) == .wait(until: at(800)))
        #expect(machine.mayAct(at(800)), "one failure changes nothing while the lease lasts")
        #expect(machine.poll(at(800)) == .sendKeepAlive(lease: 7))
        #expect(machine.requestFailed("etcd at 127.0.0.1:2379 unreachable (no reply within 500 ms)", at: at(1750)) == .wait(until: at(1800)),
                "the retry never waits past the end of validity")
        #expect(machine.poll(at(1800)) == .lost("lease 0x7 not renewed for 1.8 s: etcd at 127.0.0.1:2379 unreachable (no reply within 500 ms)"))
        #expect(!machine.mayAct(at(1800)))
        #expect(machine.poll(at(1900)) == .none, "lost is reported once")
        #expect(machine.state == .lost(reason: "lease 0x7 not renewed for 1.8 s: etcd at 127.0.0.1:2379 unreachable (no reply within 500 ms)"))
    }

    @Test func validityEndsByTimeEvenWithoutAnyEvent() {
        let machine = holding()
        // A keep-alive thread stuck in a request reports nothing; the check needs no event.
        #expect(machine.mayAct(at(1799)))
        #expect(!machine.mayAct(at(1800)))
        var polled = machine
        #expect(polled.poll(at(5000)) == .lost("lease 0x7 not renewed for 5.0 s: no keep-alive reply"))
    }

    @Test func aKeepAliveFindingTheLeaseGoneLosesItAtOnce() {
        var machine = holding()
        #expect(machine.renewed(remaining: .zero, sentAt: at(700)) == .lost("lease 0x7 expired at etcd (a keep-alive found it gone)"))
        #expect(!machine.mayAct(at(701)))
        #expect(machine.poll(at(800)) == .none)
        #expect(machine.start(at: at(900), intent: .resume) == .sendGrant(ttl: .seconds(2)), "acquiring again starts with a new lease")
    }

    @Test func aRefusedClaimIsRetriedEveryQuarterTTLWithTheSameLeaseKeptAlive() {
        var machine = WitnessLeaseStateMachine(node: "node-a", term: nil)
        _ = machine.start(at: t0, intent: .resume)
        _ = machine.granted(id: 7, ttl: .seconds(2), sentAt: t0)
        #expect(machine.claimRefused(holder: "node-b", at: at(10)) == .wait(until: at(510)))
        #expect(machine.state == .refused(machine.lease!, holder: "node-b", retryAt: at(510)))
        #expect(!machine.mayAct(at(20)))
        #expect(machine.poll(at(510)) == claim(7))
        #expect(machine.claimRefused(holder: "node-b", at: at(520)) == .wait(until: at(1020)))
        #expect(machine.poll(at(1020)) == .sendKeepAlive(lease: 7), "past its renewal time the lease is renewed before the next claim")
        #expect(machine.renewed(remaining: .seconds(2), sentAt: at(1020)) == claim(7))
        #expect(machine.claimed(at: at(1030)) == .recordTerm(term(1)))
        #expect(machine.termRecorded(at: at(1030)) == .wait(until: at(1020) + .seconds(2) / 3))
        #expect(machine.mayAct(at(2819)))
        #expect(!machine.mayAct(at(2820)))
    }

    @Test func aLeaseThatAgedWhileRefusedIsReplaced() {
        var machine = WitnessLeaseStateMachine(node: "node-a", term: nil)
        _ = machine.start(at: t0, intent: .resume)
        _ = machine.granted(id: 7, ttl: .seconds(2), sentAt: t0)
        _ = machine.claimRefused(holder: "node-b", at: at(10))
        #expect(machine.start(at: at(1800), intent: .resume) == .sendGrant(ttl: .seconds(2)), "not valid any more: a new lease")
        #expect(machine.granted(id: 8, ttl: .seconds(2), sentAt: at(1800)) == claim(8))
    }

    @Test func startRetriesARefusedClaimAtOnceWithTheSameLease() {
        var machine = WitnessLeaseStateMachine(node: "node-a", term: nil)
        _ = machine.start(at: t0, intent: .resume)
        _ = machine.granted(id: 7, ttl: .seconds(2), sentAt: t0)
        _ = machine.claimRefused(holder: "node-b", at: at(10))
        #expect(machine.start(at: at(100), intent: .resume) == claim(7), "no wait, and no second lease")
    }

    @Test func aLeaseExpiringBeforeTheClaimIsReplaced() {
        var machine = WitnessLeaseStateMachine(node: "node-a", term: nil)
        _ = machine.start(at: t0, intent: .resume)
        _ = machine.granted(id: 7, ttl: .seconds(2), sentAt: t0)
        _ = machine.claimRefused(holder: "node-b", at: at(10))
        #expect(machine.renewed(remaining: .zero, sentAt: at(700)) == .sendGrant(ttl: .seconds(2)))
    }

    @Test func failedGrantsAndClaimsAreRetried() {
        var machine = WitnessLeaseStateMachine(configuration: .init(retryInterval: .milliseconds(250)), node: "node-a", term: nil)
        _ = machine.start(at: t0, intent: .resume)
        #expect(machine.requestFailed("refused", at: at(5)) == .wait(until: at(255)))
        #expect(machine.poll(at(100)) == .wait(until: at(255)))
        #expect(machine.poll(at(255)) == .sendGrant(ttl: .seconds(2)))
        _ = machine.granted(id: 7, ttl: .seconds(2), sentAt: at(255))
        #expect(machine.requestFailed("no reply", at: at(800)) == .wait(until: at(1050)))
        #expect(machine.lease?.lastFailure == "no reply")
        #expect(machine.poll(at(1050)) == .sendKeepAlive(lease: 7), "the claim waited past the renewal time")
        #expect(!machine.mayAct(at(1050)))
    }

    @Test func aClaimThatSucceedsAfterTheLeaseRanOutIsNeverActedOn() {
        var machine = WitnessLeaseStateMachine(node: "node-a", term: nil)
        _ = machine.start(at: t0, intent: .resume)
        _ = machine.granted(id: 7, ttl: .seconds(2), sentAt: t0)
        #expect(machine.claimed(at: at(1900)) == .sendGrant(ttl: .seconds(2)), "a new lease, claimed anew")
        #expect(!machine.mayAct(at(1900)))
        #expect(machine.granted(id: 8, ttl: .seconds(2), sentAt: at(1900)) == claim(8, expecting: term(1)),
                "etcd holds the term the late claim wrote: the next claim expects it")
    }

    @Test func releaseReturnsTheLeaseAndStopsEverything() {
        var machine = holding()
        #expect(machine.release() == 7)
        #expect(machine.state == .idle)
        #expect(!machine.mayAct(at(20)))
        #expect(machine.poll(at(700)) == .none)
        #expect(machine.renewed(remaining: .seconds(2), sentAt: at(700)) == .none, "a late reply revives nothing")
        #expect(machine.granted(id: 9, ttl: .seconds(2), sentAt: at(700)) == .none)
        #expect(machine.release() == nil)
    }

    @Test func leaseIDsPrintAsEtcdctlDoes() {
        var machine = WitnessLeaseStateMachine(node: "node-a", term: nil)
        _ = machine.start(at: t0, intent: .resume)
        _ = machine.granted(id: 4_111_120_298_836_812_806, ttl: .seconds(2), sentAt: t0)
        #expect(machine.lease?.hexID == "0x390da2215110e406")
    }
}
