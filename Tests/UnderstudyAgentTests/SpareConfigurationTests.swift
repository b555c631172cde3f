import Foundation
import Testing
import UnderstudyHarness
import UnderstudySystem
@testable import UnderstudyAgent

/// A spare host's configuration, and the backup node's configuration it writes for a claimed VM.
@Suite("Spare configuration")
struct SpareConfigurationTests {
    static func spare(_ extra: String = "", root: String = "/srv/spare", listenHost: String = "192.0.2.9") throws -> SpareConfiguration {
        try SpareConfiguration(document: TOMLDocument(parsing: """
            [node]
            name = "spare-1"
            certificates = "/etc/understudy/certs"
            [fleet]
            endpoints = ["192.0.2.3:2379"]
            host = "hv-9"
            max_backups = 4
            \(extra.hasPrefix("reprotect") ? extra : "")
            [spare]
            listen_host = "\(listenHost)"
            port_base = 7400
            replica_dir = "\(root)/replicas"
            state_dir = "\(root)/state"
            boot_dir = "\(root)/boot"
            \(extra.hasPrefix("reprotect") ? "" : extra)
            """, source: "spare.toml"))
    }

    private func failure(_ extra: String = "", listenHost: String = "192.0.2.9") -> ConfigurationError? {
        do {
            _ = try Self.spare(extra, listenHost: listenHost)
            return nil
        } catch {
            return error as? ConfigurationError
        }
    }

    @Test func readsTheSpareAndFleetTables() throws {
        let spare = try Self.spare("reprotect_after_s = 12")
        #expect(spare.nodeName == "spare-1")
        #expect(spare.fleet.host == "hv-9")
        #expect(spare.fleet.tls?.expectedPeerName == "witness")
        #expect(spare.reprotectAfter == .seconds(12))
        #expect(spare.slots == 4)
        #expect(spare.tapPrefix == "usp")
        #expect(try Self.spare().reprotectAfter == .seconds(30), "the default")
        #expect(SpareAssignment(vm: "web", slot: 3, spare: spare).listen == Endpoint(host: "192.0.2.9", port: 7403))
    }

    @Test func errorsNameTheKey() {
        #expect(failure(listenHost: "0.0.0.0")?.key == "spare.listen_host", "primaries cannot reach 0.0.0.0")
        #expect(failure("tap_prefix = \"much-too-long\"")?.key == "spare.tap_prefix")
        #expect(failure("colour = 1")?.key == "spare.colour", "unknown keys are refused")
        #expect(failure("reprotect_after_s = 0")?.key == "fleet.reprotect_after_s")
        do {
            _ = try SpareConfiguration(document: TOMLDocument(parsing: """
                [node]
                name = "s"
                certificates = "/c"
                [spare]
                listen_host = "192.0.2.9"
                port_base = 7400
                replica_dir = "/r"
                state_dir = "/s"
                """, source: "spare.toml"))
            Issue.record("a spare without [fleet] was accepted")
        } catch {
            #expect(error.key == "fleet.endpoints")
            #expect(error.message.contains("registry"))
        }
    }

    @Test func theDescriptionRoundTripsThroughJSON() throws {
        let description = try SpareClaimStateMachineTests.description()
        let decoded = try JSONDecoder().decode(VMDescriptionRecord.self, from: JSONEncoder().encode(description))
        #expect(decoded == description)
        #expect(description.kernelName == "vmlinuz", "a file name, never the primary's path")
        #expect(description.primaryAddress == "192.0.2.1:7400")
        #expect(!String(decoding: try JSONEncoder().encode(description), as: UTF8.self).contains("/var/lib"), "no host path of the primary")
    }

    @Test func theBackupNodesConfigurationDescribesTheSameVMWithTheSparesIdentity() throws {
        try withTemporaryDirectory("spare-config") { root in
            let spare = try Self.spare(root: root)
            try FileManager.default.createDirectory(atPath: "\(root)/boot", withIntermediateDirectories: true)
            FileManager.default.createFile(atPath: "\(root)/boot/vmlinuz", contents: Data([1]))
            var description = try SpareClaimStateMachineTests.description()
            description.diskSizes = [4 << 20, 1 << 20]
            description.macs = ["52:54:00:aa:bb:01", "52:54:00:aa:bb:02"]
            description.witnessEndpoints = ["192.0.2.3:2379"]
            description.replicationMode = "asynchronous"
            #expect(SpareAssignment.problem(with: description, spare: spare) == nil)
            var missing = description
            missing.initrdName = "initrd.img"
            #expect(SpareAssignment.problem(with: missing, spare: spare)?.contains("initrd.img") == true)

            let assignment = SpareAssignment(vm: "web", slot: 2, spare: spare)
            try assignment.prepare(description, spare: spare)
            let written = try AgentConfiguration(contentsOfFile: assignment.configurationFile)
            #expect(written.nodeName == "spare-1")
            #expect(written.certificates == "/etc/understudy/certs")
            #expect(written.peerName == "node-a")
            #expect(written.peerAddress == Endpoint(host: "192.0.2.1", port: 7400))
            #expect(written.nics.map(\.tap) == ["usp2n0", "usp2n1"])
            let backup = try written.backup()
            #expect(backup.listen == Endpoint(host: "192.0.2.9", port: 7402))
            #expect(backup.replicaDirectory == "\(root)/replicas/web")
            #expect(written.vm.diskImages == ["\(root)/state/web/disk0.raw", "\(root)/state/web/disk1.raw"])
            #expect(written.vm.kernel == "\(root)/boot/vmlinuz")
            #expect(written.fleet?.host == "hv-9")
            // What the spare's node would publish as the VM's description is the primary's, but for who the primary is.
            var mirrored = VMDescriptionRecord(configuration: written, host: "hv-a", publishedAt: 0)
            (mirrored.primaryNode, mirrored.primaryAddress) = (description.primaryNode, description.primaryAddress)
            #expect(mirrored == description)
        }
    }
}
