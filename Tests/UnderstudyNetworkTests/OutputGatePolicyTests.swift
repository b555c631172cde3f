import Foundation
import Testing
import UnderstudyNetwork
import UnderstudyHarness

/// The gate policy on a real gate: a fake QEMU on one side, the namespace (the clients' side) on
/// the other, which checks what got through.
@Suite struct OutputGatePolicyTests {
    private static let open: UInt16 = 7001
    private static let blocked: UInt16 = 7002

    private static func datagram(_ text: String, port: UInt16, tapMAC: [UInt8]) -> [UInt8] {
        udpFrame(to: tapMAC, from: NetworkLab.guestMAC, sourceIP: NetworkLab.guestIP, destinationIP: NetworkLab.hostIP,
                 sourcePort: 40000, destinationPort: port, payload: Array(text.utf8))
    }

    private static func deny(_ direction: GateRule.Direction, port: UInt16) -> GateRule {
        GateRule(action: .deny, direction: direction, traffic: .udp, destinationPorts: PortRange(port, port))
    }

    /// The payloads of UDP frames reaching the guest on `ports`, until `last` arrives or `seconds` pass.
    private static func toGuest(_ guest: FakeQEMU, ports: [UInt16], until last: String, within seconds: Double) -> [String] {
        let deadline = Date(timeIntervalSinceNow: seconds)
        var payloads: [String] = []
        while !payloads.contains(last), let frame = guest.receiveFrame(within: max(0, deadline.timeIntervalSinceNow)) {
            for port in ports {
                if let payload = udpPayload(of: frame, port: port) { payloads.append(String(decoding: payload, as: UTF8.self)) }
            }
        }
        return payloads
    }

    @Test func aRuleBlocksOnePortAndAllowsAnotherBothWays() throws {
        let lab = try NetworkLab()
        defer { lab.remove() }
        let path = uniqueSocketPath()
        let policy = GatePolicy(rules: [Self.deny(.fromGuest, port: Self.blocked), Self.deny(.toGuest, port: Self.blocked)])
        let gate = try OutputGate(guestSocketPath: path, tapName: lab.tap, policy: policy, logger: TestGuest.quietLogger)
        defer { gate.stop() }
        try lab.moveTAPIntoNamespace()
        try lab.addGuestNeighbour()
        let mac = try lab.tapMAC()
        let openListener = try lab.udpListener(port: Self.open)
        let blockedListener = try lab.udpListener(port: Self.blocked)
        let guest = try FakeQEMU(path: path)
        #expect(eventually { gate.statistics.guestConnected })

        guest.send(frame: Self.datagram("out-blocked", port: Self.blocked, tapMAC: mac))
        guest.send(frame: Self.datagram("out-open", port: Self.open, tapMAC: mac))
        #expect(eventually { gate.statistics.buffer.heldFrames == 1 }, "the denied frame is never held")
        gate.seal(epoch: 1)
        gate.release(through: 1)
        #expect(openListener.lines(within: 1) == [Array("out-open".utf8).hex])
        #expect(blockedListener.lines(within: 0.3).isEmpty, "nothing reaches the namespace on the blocked port")
        #expect(gate.statistics.buffer.releasedFrames == 1)

        try lab.sendToGuest("in-blocked", port: Self.blocked)
        try lab.sendToGuest("in-open", port: Self.open)
        try lab.sendToGuest("in-blocked-again", port: Self.blocked)
        try lab.sendToGuest("in-open-again", port: Self.open)
        #expect(Self.toGuest(guest, ports: [Self.open, Self.blocked], until: "in-open-again", within: 5) == ["in-open", "in-open-again"],
                "the guest never sees the blocked port's datagrams")

        let statistics = gate.policyStatistics
        #expect(statistics.rules.map(\.deniedFrames) == [1, 2])
        #expect(statistics.rules.map(\.bytes) == [UInt64(Self.datagram("out-blocked", port: 0, tapMAC: mac).count), statistics.rules[1].bytes])
    }

    /// A reload mid-traffic: the frame held under the old policy still leaves when its epoch is
    /// acknowledged; frames read after the swap get the new policy.
    @Test func aSwapMidTrafficKeepsTheHeldFrames() throws {
        let lab = try NetworkLab()
        defer { lab.remove() }
        let path = uniqueSocketPath()
        let gate = try OutputGate(guestSocketPath: path, tapName: lab.tap, logger: TestGuest.quietLogger)
        defer { gate.stop() }
        try lab.moveTAPIntoNamespace()
        let mac = try lab.tapMAC()
        let openListener = try lab.udpListener(port: Self.open)
        let blockedListener = try lab.udpListener(port: Self.blocked)
        let guest = try FakeQEMU(path: path)
        #expect(eventually { gate.statistics.guestConnected })

        guest.send(frame: Self.datagram("held-before", port: Self.blocked, tapMAC: mac))
        #expect(eventually { gate.statistics.buffer.heldFrames == 1 })
        gate.setPolicy(GatePolicy(rules: [Self.deny(.both, port: Self.blocked)]))
        guest.send(frame: Self.datagram("after", port: Self.blocked, tapMAC: mac))
        guest.send(frame: Self.datagram("open", port: Self.open, tapMAC: mac))
        #expect(eventually { gate.statistics.buffer.heldFrames == 2 })
        #expect(eventually { gate.policyStatistics.rules.first?.deniedFrames == 1 })
        gate.seal(epoch: 1)
        gate.release(through: 1)
        #expect(blockedListener.lines(within: 1) == [Array("held-before".utf8).hex], "held before the swap: not lost, and the later one dropped")
        #expect(openListener.lines(within: 0.5) == [Array("open".utf8).hex])

        gate.setPolicy(.allowAll)
        guest.send(frame: Self.datagram("allowed-again", port: Self.blocked, tapMAC: mac))
        #expect(eventually { gate.statistics.buffer.heldFrames == 1 })
        gate.seal(epoch: 2)
        gate.release(through: 2)
        #expect(blockedListener.lines(within: 1) == [Array("allowed-again".utf8).hex])
    }
}
