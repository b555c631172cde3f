import Testing
import UnderstudyNetwork

@Suite struct GatePolicyStateMachineTests {
    private let start = ContinuousClock.now
    private let ssh = summary(ipFrame(protocol: 6, destinationPort: 22))
    private let web = summary(ipFrame(protocol: 6, destinationPort: 80))

    @Test func theEmptyPolicyAllowsEverything() {
        var machine = GatePolicyStateMachine(now: start)
        #expect(machine.policy.allowsEverything)
        #expect(machine.filter(ssh, length: 60, .fromGuest, now: start) == .init(allowed: true))
        #expect(machine.statistics.unmatchedFrames == 1)
        #expect(machine.statistics.deniedFrames == 0)
    }

    @Test func countsPerRuleAndDefaultDeny() {
        let policy = GatePolicy(rules: [GateRule(action: .allow, traffic: .tcp, destinationPorts: PortRange(80, 80)),
                                        GateRule(name: "no ssh", action: .deny, traffic: .tcp, destinationPorts: PortRange(22, 22))],
                                defaultAction: .deny)
        var machine = GatePolicyStateMachine(policy: policy, now: start)
        #expect(machine.filter(web, length: 100, .fromGuest, now: start).allowed)
        #expect(machine.filter(web, length: 50, .toGuest, now: start).allowed)
        let denied = machine.filter(ssh, length: 70, .fromGuest, now: start)
        #expect(!denied.allowed)
        #expect(denied.rule == 1)
        let icmp = machine.filter(summary(ipFrame(protocol: 1)), length: 40, .fromGuest, now: start)
        #expect(!icmp.allowed)
        #expect(icmp.rule == nil)
        let statistics = machine.statistics
        #expect(statistics.rules.map(\.name) == ["rule 0", "no ssh"])
        #expect(statistics.rules.map(\.frames) == [2, 1])
        #expect(statistics.rules.map(\.bytes) == [150, 70])
        #expect(statistics.rules.map(\.deniedFrames) == [0, 1])
        #expect(statistics.unmatchedFrames == 1)
        #expect(statistics.defaultAction == "deny")
        #expect(statistics.deniedFrames == 2)
    }

    /// 10 frames a second with bursts of 3: the clock, not the wall, decides.
    @Test func rateLimitDropsWhatIsOverTheRate() {
        let policy = GatePolicy(rules: [GateRule(action: .allow, traffic: .tcp, rateLimit: .init(packetsPerSecond: 10, burst: 3))])
        var machine = GatePolicyStateMachine(policy: policy, now: start)
        let burst = (0..<5).map { _ in machine.filter(web, length: 60, .fromGuest, now: start).allowed }
        #expect(burst == [true, true, true, false, false])
        #expect(!machine.filter(web, length: 60, .fromGuest, now: start + .milliseconds(50)).allowed, "half a token")
        #expect(machine.filter(web, length: 60, .fromGuest, now: start + .milliseconds(100)).allowed, "one token after 100 ms")
        #expect(!machine.filter(web, length: 60, .fromGuest, now: start + .milliseconds(100)).allowed)
        let later = (0..<4).map { _ in machine.filter(web, length: 60, .fromGuest, now: start + .seconds(10)).allowed }
        #expect(later == [true, true, true, false], "a quiet spell refills the burst, no more")
        #expect(machine.statistics.rules[0].frames == 12)
        #expect(machine.statistics.rules[0].deniedFrames == 5)
        #expect(machine.filter(summary(ipFrame(protocol: 17)), length: 60, .fromGuest, now: start + .seconds(10)).allowed,
                "frames the rule does not match are not limited")
    }

    @Test func droppedFramesAreReportedOncePerSecondPerRule() {
        let policy = GatePolicy(rules: [GateRule(action: .deny, traffic: .tcp, destinationPorts: PortRange(22, 22))], defaultAction: .deny)
        var machine = GatePolicyStateMachine(policy: policy, now: start)
        #expect(machine.filter(ssh, length: 60, .toGuest, now: start).report == .init(suppressed: 0))
        #expect(machine.filter(ssh, length: 60, .toGuest, now: start + .milliseconds(10)).report == nil)
        #expect(machine.filter(ssh, length: 60, .toGuest, now: start + .milliseconds(999)).report == nil)
        #expect(machine.filter(summary(ipFrame(protocol: 1)), length: 60, .toGuest, now: start + .milliseconds(999)).report == .init(suppressed: 0),
                "the default action reports on its own")
        #expect(machine.filter(ssh, length: 60, .toGuest, now: start + .seconds(1)).report == .init(suppressed: 2))
        #expect(machine.filter(ssh, length: 60, .toGuest, now: start + .seconds(3)).report == .init(suppressed: 0))
    }

    @Test func replacingKeepsTheCountersOfUnchangedRulesOnly() {
        let keep = GateRule(name: "web", action: .allow, traffic: .tcp, destinationPorts: PortRange(80, 80))
        let drop = GateRule(action: .deny, traffic: .tcp, destinationPorts: PortRange(22, 22))
        var machine = GatePolicyStateMachine(policy: GatePolicy(rules: [drop, keep]), now: start)
        _ = machine.filter(web, length: 60, .fromGuest, now: start)
        _ = machine.filter(ssh, length: 60, .fromGuest, now: start)
        _ = machine.filter(summary(ipFrame(protocol: 1)), length: 60, .fromGuest, now: start)
        let changed = GateRule(action: .deny, traffic: .tcp, destinationPorts: PortRange(22, 23))
        machine.replace(with: GatePolicy(rules: [keep, changed]), now: start)
        #expect(machine.statistics.rules.map(\.frames) == [1, 0], "the kept rule moved to 0 with its counters; the changed one starts over")
        #expect(machine.statistics.rules.map(\.name) == ["web", "rule 1"])
        #expect(machine.statistics.unmatchedFrames == 1, "same default action: its counter stays")
        #expect(!machine.filter(ssh, length: 60, .fromGuest, now: start).allowed)
        machine.replace(with: GatePolicy(rules: [keep], defaultAction: .deny), now: start)
        #expect(machine.statistics.unmatchedFrames == 0)
        #expect(!machine.filter(ssh, length: 60, .fromGuest, now: start).allowed, "the new default denies")
    }

    @Test func aKeptRuleKeepsItsRateLimitBucket() {
        let limited = GateRule(action: .allow, traffic: .tcp, rateLimit: .init(packetsPerSecond: 1, burst: 1))
        var machine = GatePolicyStateMachine(policy: GatePolicy(rules: [limited]), now: start)
        #expect(machine.filter(web, length: 60, .fromGuest, now: start).allowed)
        machine.replace(with: GatePolicy(rules: [GateRule(action: .deny, traffic: .udp), limited]), now: start)
        #expect(!machine.filter(web, length: 60, .fromGuest, now: start).allowed, "a reload is no way around the limit")
    }
}
