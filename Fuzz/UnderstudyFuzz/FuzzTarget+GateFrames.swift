import UnderstudyNetwork

extension FuzzTarget {
    /// A guest's (or the network's) Ethernet frame through the gate policy: classified in place,
    /// then decided both ways by rules on every field. The classifier must stay inside the frame
    /// and its summary must be consistent (ports only for TCP or UDP over IPv4).
    static let gateFrames = FuzzTarget(name: "gate-frames", run: { bytes in
        let summary = bytes.withUnsafeBytes { FrameSummary(parsing: $0) }
        precondition(!summary.hasPorts || (summary.kind == .ipv4 && (summary.ipProtocol == FrameSummary.tcp || summary.ipProtocol == FrameSummary.udp)),
                     "ports on a frame that has none: \(summary)")
        var machine = GatePolicyStateMachine(policy: GateFramesSamples.policy, now: GateFramesSamples.start)
        for direction in [FrameDirection.fromGuest, .toGuest] {
            _ = machine.filter(summary, length: bytes.count, direction, now: GateFramesSamples.start)
        }
        _ = summary.description
    }, seeds: { GateFramesSamples.frames })
}

/// Rules touching every field, and frames of each kind the classifier knows.
enum GateFramesSamples {
    static let start = ContinuousClock.now

    static let policy = GatePolicy(rules: [
        GateRule(action: .deny, direction: .toGuest, traffic: .tcp, source: IPv4Network(parsing: "10.0.0.0/8"), destinationPorts: PortRange(22, 22)),
        GateRule(action: .allow, direction: .fromGuest, traffic: .udp, destination: IPv4Network(parsing: "192.0.2.0/24"), sourcePorts: PortRange(53, 53),
                 rateLimit: .init(packetsPerSecond: 10, burst: 2)),
        GateRule(action: .deny, traffic: .arp, destination: IPv4Network(parsing: "10.0.0.9")),
        GateRule(action: .allow, traffic: .icmp),
    ], defaultAction: .deny)

    static var frames: [[UInt8]] {
        let ethernet: [UInt8] = [0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x02, 0, 0, 0, 0, 1]
        func ipv4(_ number: UInt8, ports: [UInt8]) -> [UInt8] {
            [0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, number, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1] + ports + [UInt8](repeating: 0, count: 16)
        }
        let tcp = ethernet + [0x08, 0x00] + ipv4(6, ports: [0x9C, 0x40, 0, 22])
        let udp = ethernet + [0x08, 0x00] + ipv4(17, ports: [0, 53, 0, 53])
        let icmp = ethernet + [0x08, 0x00] + ipv4(1, ports: [8, 0, 0, 0])
        let tagged = ethernet + [0x81, 0x00, 0x00, 0x05, 0x08, 0x00] + ipv4(6, ports: [0x1F, 0x90, 0, 80])
        let arp = ethernet + [0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1] + Array(ethernet[0..<6]) + [10, 0, 0, 2] + [0, 0, 0, 0, 0, 0] + [10, 0, 0, 9]
        return [tcp, udp, icmp, tagged, arp]
    }
}
