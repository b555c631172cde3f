import Foundation
import Testing
import UnderstudyHarness
import UnderstudyNetwork
import UnderstudyQEMU
import UnderstudySystem
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
        let sandbox = try DrillSandbox(tag: tag, vm: vm, macs: ["52:54:00:00:77:02"], address: "10.77.0.1/24", outputBufferBytes: 1 << 20,
                                       policy: policy, logger: TestGuest.quietLogger)
        defer { sandbox.remove() }
        let statistics = try #require(sandbox.devices.policyStatistics)
        #expect(statistics.rules.map(\.name) == ["closed"])
        #expect(statistics.rules.map(\.rule) == ["deny tcp to_guest port 7001"])
    }

    /// The log names the sandbox before its namespace exists, so that whoever cleans up after an
    /// agent killed mid-drill finds it (`DrillSandboxLog`): here the sandbox fails after making
    /// its namespace (an address `ip` refuses), and is named all the same, and gone.
    @Test func theLogNamesTheSandboxBeforeItsNamespaceExists() throws {
        let directory = try TemporaryDirectory("sandbox")
        defer { directory.remove() }
        let tag = String(UInt32.random(in: 0...0xFFFFFF), radix: 16)
        let vm = VMDescription(id: "sandbox", memoryBytes: 64 << 20, kernel: "/k", runDirectory: "\(directory.path)/run")
        let log = LogCapture()
        #expect(throws: (any Error).self) {
            let sandbox = try DrillSandbox(tag: tag, vm: vm, macs: ["52:54:00:00:77:02"], address: "10.77.0.1/99", outputBufferBytes: 1 << 20,
                                           policy: GatePolicy(rules: []), logger: log.logger)
            sandbox.remove()
        }
        #expect(log.messages.contains { $0.contains("drill sandbox") && $0.contains("sandbox=us-drill-\(tag)") }, "\(log.messages)")
        #expect(!FileManager.default.fileExists(atPath: "/var/run/netns/us-drill-\(tag)"), "a sandbox that failed removes its namespace")
    }

    /// A clone has every NIC the VM has (its device state names them all), each behind a gate and a
    /// TAP in the sandbox; only the first gets the sandbox's address.
    @Test func everyNICGetsItsOwnGateAndTapInTheSandbox() throws {
        let directory = try TemporaryDirectory("sandbox")
        defer { directory.remove() }
        let tag = String(UInt32.random(in: 0...0xFFFFFF), radix: 16)
        let vm = VMDescription(id: "sandbox", memoryBytes: 64 << 20, kernel: "/k", runDirectory: "\(directory.path)/run")
        let sandbox = try DrillSandbox(tag: tag, vm: vm, macs: ["52:54:00:00:77:02", "52:54:00:00:77:03"], address: "10.77.0.1/24",
                                       outputBufferBytes: 1 << 20, policy: GatePolicy(rules: []), logger: TestGuest.quietLogger)
        defer { sandbox.remove() }
        #expect(sandbox.devices.gates.count == 2)
        #expect(sandbox.taps == ["usdrill\(tag)", "usdrill\(tag)1"])
        let arguments = sandbox.qemuArguments.joined(separator: " ")
        #expect(arguments.contains("id=net0") && arguments.contains("netdev=net1,mac=52:54:00:00:77:03"))
        func addresses(_ tap: String) throws -> String {
            try HostCommand.execute("/usr/sbin/ip", ["-n", sandbox.namespace, "-o", "-4", "addr", "show", "dev", tap]).stdout
        }
        #expect(try addresses(sandbox.taps[0]).contains("10.77.0.1/24"))
        #expect(try addresses(sandbox.taps[1]).isEmpty, "the second NIC has no address")
    }
}
