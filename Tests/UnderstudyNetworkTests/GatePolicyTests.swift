import Testing
import UnderstudyNetwork

@Suite struct GatePolicyTests {
    @Test func parsesNetworksAndRejectsNonsense() {
        #expect(IPv4Network(parsing: "10.0.0.0/8") == IPv4Network(address: 0x0A00_0000, prefixLength: 8))
        #expect(IPv4Network(parsing: "10.99.0.2")?.prefixLength == 32)
        #expect(IPv4Network(parsing: "0.0.0.0/0")?.contains(0xFFFF_FFFF) == true)
        #expect(IPv4Network(parsing: "192.168.1.0/24")?.description == "192.168.1.0/24")
        for bad in ["10.0.0.1/8", "10.0.0/8", "256.0.0.0", "10.0.0.0/33", "10.0.0.0/", "::1", "", "1.2.3.4/ 8", "+1.2.3.4", "a.b.c.d"] {
            #expect(IPv4Network(parsing: bad) == nil, "\(bad)")
        }
    }

    @Test func parsesPortRanges() {
        #expect(PortRange(parsing: "80") == PortRange(80, 80))
        #expect(PortRange(parsing: "8000-8100") == PortRange(8000, 8100))
        #expect(PortRange(parsing: "0-65535")?.contains(65535) == true)
        for bad in ["", "80-", "-80", "9000-8000", "65536", "http", "1-2-3", "+80"] {
            #expect(PortRange(parsing: bad) == nil, "\(bad)")
        }
    }

    @Test func firstMatchWinsAndEveryFieldMustMatch() {
        let policy = GatePolicy(rules: [
            GateRule(action: .allow, direction: .toGuest, traffic: .tcp, source: IPv4Network(parsing: "10.99.0.0/24"), destinationPorts: PortRange(22, 22)),
            GateRule(action: .deny, traffic: .tcp, destinationPorts: PortRange(22, 22)),
            GateRule(action: .deny, direction: .fromGuest, traffic: .udp, destinationPorts: PortRange(5000, 5999)),
            GateRule(action: .deny, traffic: .arp, destination: IPv4Network(parsing: "10.99.0.9")),
        ])
        let ssh = summary(ipFrame(protocol: 6, from: [10, 99, 0, 1], to: [10, 99, 0, 2], destinationPort: 22))
        #expect(policy.firstMatch(ssh, .toGuest) == 0)
        #expect(policy.firstMatch(ssh, .fromGuest) == 1, "rule 0 is for frames to the guest only")
        let sshFromElsewhere = summary(ipFrame(protocol: 6, from: [10, 1, 0, 1], to: [10, 99, 0, 2], destinationPort: 22))
        #expect(policy.firstMatch(sshFromElsewhere, .toGuest) == 1)
        #expect(policy.firstMatch(summary(ipFrame(protocol: 17, destinationPort: 22)), .toGuest) == nil, "udp is not tcp")
        #expect(policy.firstMatch(summary(ipFrame(protocol: 17, destinationPort: 5500)), .fromGuest) == 2)
        #expect(policy.firstMatch(summary(ipFrame(protocol: 17, destinationPort: 6000)), .fromGuest) == nil)
        #expect(policy.firstMatch(summary(arpFrame(sender: [10, 99, 0, 2], target: [10, 99, 0, 9])), .fromGuest) == 3)
        #expect(policy.firstMatch(summary(arpFrame(sender: [10, 99, 0, 2], target: [10, 99, 0, 8])), .fromGuest) == nil)
    }

    @Test func addressesAndPortsNeverMatchFramesWithoutThem() {
        let byAddress = GateRule(action: .deny, source: IPv4Network(parsing: "0.0.0.0/0"))
        var ipv6 = ipFrame()
        ipv6[12] = 0x86
        ipv6[13] = 0xDD
        #expect(!byAddress.matches(summary(ipv6), .fromGuest))
        #expect(byAddress.matches(summary(ipFrame()), .fromGuest))
        let byPort = GateRule(action: .deny, traffic: .tcp, destinationPorts: PortRange(0, 65535))
        var fragment = ipFrame()
        fragment[21] = 0x10
        #expect(!byPort.matches(summary(fragment), .fromGuest))
        #expect(GateRule(action: .deny).matches(summary(ipv6), .toGuest), "protocol any without addresses matches everything")
    }

    @Test func unusableRulesAreNamed() {
        #expect(GateRule(action: .deny, traffic: .icmp, destinationPorts: PortRange(1, 1)).problem?.field == "destination_ports")
        #expect(GateRule(action: .deny, rateLimit: .init(packetsPerSecond: 1, burst: 1)).problem?.field == "rate")
        #expect(GateRule(action: .allow, traffic: .udp, sourcePorts: PortRange(1, 1), rateLimit: .init(packetsPerSecond: 1, burst: 1)).problem == nil)
    }

    @Test func describesRules() {
        let rule = GateRule(action: .deny, direction: .toGuest, traffic: .tcp, source: IPv4Network(parsing: "10.0.0.0/8"), destinationPorts: PortRange(22, 22))
        #expect(rule.description == "deny tcp to_guest from 10.0.0.0/8 port 22")
    }
}
