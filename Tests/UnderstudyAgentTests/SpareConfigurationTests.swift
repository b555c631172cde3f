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
        #expect(failure("udp_host = \"::\"")?.key == "spare.udp_host", "a primary checks the datagrams' source: one address")
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

    @Test func theDatagramEndpointsArePublishedWhereTheyCanBeReachedAndOlderRecordsStillDecode() throws {
        func udp(_ listen: String) throws -> String? {
            try SpareClaimStateMachineTests.description(extra: "[heartbeat]\nudp_listen = \"\(listen)\"\nudp_peer = \"198.51.100.2:7500\"").primaryUDP
        }
        #expect(try udp("198.51.100.1:7500") == "198.51.100.1:7500")
        #expect(try udp("0.0.0.0:7500") == nil, "every address: no source a backup could check")
        #expect(try SpareClaimStateMachineTests.description().primaryUDP == nil, "no second path")

        // Written by nodes and spares of the version before: the new fields read as absent.
        var old = try JSONSerialization.jsonObject(with: JSONEncoder().encode(try SpareClaimStateMachineTests.description())) as! [String: Any]
        old["primaryUDP"] = nil
        #expect(try JSONDecoder().decode(VMDescriptionRecord.self, from: JSONSerialization.data(withJSONObject: old)).primaryUDP == nil)
        let claim = try JSONDecoder().decode(SpareClaim.self, from: Data(
            #"{"claimedAt":1,"host":"hv-s","listen":"192.0.2.9:7400","lostBackup":"node-b","node":"spare-s"}"#.utf8))
        #expect(claim == SpareClaim(host: "hv-s", node: "spare-s", listen: "192.0.2.9:7400", lostBackup: "node-b", claimedAt: 1))
        let peer = try JSONDecoder().decode(FleetPeerRecord.Peer.self, from: Data(#"{"address":"192.0.2.9:7400","name":"spare-s"}"#.utf8))
        #expect(peer == FleetPeerRecord.Peer(name: "spare-s", address: "192.0.2.9:7400"))
        let withUDP = SpareClaim(host: "hv-s", node: "spare-s", listen: "192.0.2.9:7400", udp: "198.51.100.9:7400", lostBackup: "node-b", claimedAt: 1)
        #expect(try JSONDecoder().decode(SpareClaim.self, from: Data(FleetRegistry.json(withUDP).utf8)) == withUDP)
    }

    @Test func theSparesBackupNodeGetsTheSecondHeartbeatPathWhenBothEndsHaveOne() throws {
        try withTemporaryDirectory("spare-udp") { root in
            let primaryUDP = "[heartbeat]\nudp_listen = \"198.51.100.1:7500\"\nudp_peer = \"198.51.100.2:7500\""
            let description = try SpareClaimStateMachineTests.description(extra: primaryUDP)
            func written(_ spare: SpareConfiguration, _ description: VMDescriptionRecord) throws -> AgentConfiguration {
                let assignment = SpareAssignment(vm: "web", slot: 2, spare: spare)
                try assignment.prepare(description, spare: spare)
                return try AgentConfiguration(contentsOfFile: assignment.configurationFile)
            }
            let withUDP = try Self.spare("udp_host = \"198.51.100.9\"", root: root)
            // What the claim tells the primary, and what the node listens on: one value.
            #expect(SpareAssignment(vm: "web", slot: 2, spare: withUDP).datagramListen(description) == Endpoint(host: "198.51.100.9", port: 7402))
            #expect(try SpareAssignment(vm: "web", slot: 2, spare: withUDP).datagramListen(SpareClaimStateMachineTests.description()) == nil)
            let both = try written(withUDP, description)
            #expect(both.heartbeatDatagrams?.listen == Endpoint(host: "198.51.100.9", port: 7402), "spare.udp_host at the slot's port")
            #expect(both.heartbeatDatagrams?.peer == Endpoint(host: "198.51.100.1", port: 7500), "the primary's udp_listen")
            #expect(try written(Self.spare(root: root), description).heartbeatDatagrams == nil, "no spare.udp_host: the replication link only")
            #expect(try written(Self.spare("udp_host = \"198.51.100.9\"", root: root), SpareClaimStateMachineTests.description()).heartbeatDatagrams == nil,
                    "a primary without a second path")
        }
    }
}
