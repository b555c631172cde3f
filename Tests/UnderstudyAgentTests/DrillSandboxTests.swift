import Testing
import UnderstudyHarness
import UnderstudyNetwork
import UnderstudyQEMU
@testable import UnderstudyAgent

/// The drill's clone sits behind a gate of its own, in a namespace of its own: that gate applies
/// the node's policy, so that the rehearsal sees the firewall production has.
@Suite struct DrillSandboxTests {
    @Test func theSandboxGateAppliesTheNodesPolicy() throws {
        let directory = try TemporaryDirectory("sandbox")
        defer { directory.remove() }
        let tag = String(UInt32.random(in: 0...0xFFFFFF), radix: 16)
        let vm = VMDescription(id: "sandbox", memoryBytes: 64 << 20, kernel: "/k", runDirectory: "\(directory.path)/run")
        let policy = GatePolicy(rules: [GateRule(name: "closed", action: .deny, direction: .toGuest, traffic: .tcp, destinationPorts: PortRange(7001, 7001))])
        let sandbox = try DrillSandbox(tag: tag, vm: vm, nic: true, mac: "52:54:00:00:77:02", address: "10.77.0.1/24", outputBufferBytes: 1 << 20,
                                       policy: policy, logger: TestGuest.quietLogger)
        defer { sandbox.remove() }
        let statistics = try #require(sandbox.devices.gate?.policyStatistics)
        #expect(statistics.rules.map(\.name) == ["closed"])
        #expect(statistics.rules.map(\.rule) == ["deny tcp to_guest port 7001"])
    }
}
