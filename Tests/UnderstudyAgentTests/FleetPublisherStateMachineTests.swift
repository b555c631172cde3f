import Testing
@testable import UnderstudyAgent

/// When the registry publisher grants, renews, writes and waits (time passed in).
@Suite("Fleet publisher state machine")
struct FleetPublisherStateMachineTests {
    let start = ContinuousClock.now

    func at(_ milliseconds: Int) -> ContinuousClock.Instant { start + .milliseconds(milliseconds) }

    @Test func grantsThenPublishesAtOnceThenOncePerPeriod() {
        var machine = FleetPublisherStateMachine(period: .seconds(1))
        #expect(machine.next(at: at(0), changed: true) == .grant)
        #expect(machine.granted(id: 7, ttl: .seconds(6), sentAt: at(0)) == nil)
        #expect(machine.next(at: at(10), changed: false) == .publish(lease: 7), "a new lease carries nothing yet")
        #expect(machine.published(at: at(20)) == nil)
        #expect(machine.next(at: at(30), changed: false) == .wait(until: at(280)), "look for changes a quarter period later")
        #expect(machine.next(at: at(900), changed: false) == .wait(until: at(1020)), "the period ends first")
        #expect(machine.next(at: at(1020), changed: false) == .publish(lease: 7))
    }

    @Test func aChangePublishesAtOnce() {
        var machine = FleetPublisherStateMachine(period: .seconds(1))
        _ = machine.next(at: at(0), changed: true)
        _ = machine.granted(id: 7, ttl: .seconds(6), sentAt: at(0))
        _ = machine.published(at: at(10))
        #expect(machine.next(at: at(260), changed: true) == .publish(lease: 7))
    }

    @Test func renewsEveryThirdOfTheTTLCountedFromTheSend() {
        var machine = FleetPublisherStateMachine(period: .seconds(1))
        _ = machine.next(at: at(0), changed: false)
        _ = machine.granted(id: 7, ttl: .seconds(3), sentAt: at(0))
        _ = machine.published(at: at(900))
        #expect(machine.next(at: at(950), changed: false) == .wait(until: at(1000)), "the renewal is due before the period ends")
        #expect(machine.next(at: at(1000), changed: false) == .renew(lease: 7))
        #expect(machine.renewed(remaining: .seconds(3), sentAt: at(1000)) == nil)
        #expect(machine.next(at: at(1010), changed: false) == .wait(until: at(1260)))
        #expect(machine.lease?.renewedAt == at(1000))
    }

    @Test func aLeaseEtcdNoLongerKnowsIsReplacedAndEverythingWrittenAgain() {
        var machine = FleetPublisherStateMachine(period: .seconds(1))
        _ = machine.next(at: at(0), changed: false)
        _ = machine.granted(id: 7, ttl: .seconds(3), sentAt: at(0))
        _ = machine.published(at: at(10))
        _ = machine.next(at: at(1000), changed: false)
        _ = machine.renewed(remaining: .zero, sentAt: at(1000))
        #expect(machine.lease == nil)
        #expect(machine.next(at: at(1010), changed: false) == .grant)
        _ = machine.granted(id: 8, ttl: .seconds(3), sentAt: at(1010))
        #expect(machine.next(at: at(1020), changed: false) == .publish(lease: 8))
    }

    @Test func failuresAreRetriedAPeriodLaterAndLoggedOncePerRun() {
        var machine = FleetPublisherStateMachine(period: .seconds(1))
        #expect(machine.next(at: at(0), changed: false) == .grant)
        var first = machine.failed("etcd down", at: at(0))
        #expect(first, "the first failure is logged")
        #expect(machine.next(at: at(500), changed: true) == .wait(until: at(1000)), "not hammering a dead etcd, even for a change")
        #expect(machine.next(at: at(1000), changed: false) == .grant)
        first = machine.failed("etcd still down", at: at(1000))
        #expect(!first, "the rest of the run is not")
        #expect(machine.failure == "etcd down")
        #expect(machine.granted(id: 9, ttl: .seconds(5), sentAt: at(2000)) == "etcd down", "the first success ends the run")
        #expect(machine.failure == nil)
        first = machine.failed("again", at: at(2100))
        #expect(first, "a new run is logged again")
    }

    @Test func aLeaseThatRanOutWhileEtcdWasUnreachableIsGrantedAgain() {
        var machine = FleetPublisherStateMachine(period: .seconds(1))
        _ = machine.next(at: at(0), changed: false)
        _ = machine.granted(id: 7, ttl: .seconds(3), sentAt: at(0))
        _ = machine.published(at: at(10))
        #expect(machine.next(at: at(1000), changed: false) == .renew(lease: 7))
        _ = machine.failed("timeout", at: at(1000))
        #expect(machine.next(at: at(2000), changed: false) == .renew(lease: 7))
        _ = machine.failed("timeout", at: at(2000))
        #expect(machine.next(at: at(3000), changed: false) == .grant, "three seconds after the last renewal was sent: it may be gone")
        #expect(machine.stop(at: at(3000)) == nil, "nothing left to revoke")
    }

    @Test func stoppingRevokesALeaseThatMayStillHold() {
        var machine = FleetPublisherStateMachine(period: .seconds(1))
        _ = machine.next(at: at(0), changed: false)
        _ = machine.granted(id: 7, ttl: .seconds(3), sentAt: at(0))
        #expect(machine.stop(at: at(100)) == 7)
        #expect(machine.lease == nil)
    }
}
