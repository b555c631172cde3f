import Foundation
import Testing
import UnderstudyHarness
import UnderstudySystem
import UnderstudyTestTags
import UnderstudyTransport
@testable import UnderstudyAgent

/// A spare host restores protection end to end: a pair and a spare with `[fleet]` on one etcd,
/// the counter guest on the primary; the backup is killed, the spare claims the VM, the primary
/// follows the claim and synchronises the spare in full, its heartbeat datagrams going to the
/// spare's backup node; the lost backup, restarted, stands down.
@Suite(.tags(.vm), .skippedInQuickLoop, .enabled(if: EtcdProcess.isInstalled, "needs /usr/bin/etcd (Debian's etcd-server)"))
struct SpareHostVMTests {
    @Test func aSpareReprotectsAPrimaryWhoseBackupWasKilledAndTheLostBackupStandsDown() throws {
        let directory = NSTemporaryDirectory() + "understudy-spare-\(UUID().uuidString.prefix(8))"
        let vm = "sp\(UUID().uuidString.prefix(6).lowercased())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var processes: [Process] = []
        var etcd: EtcdProcess?
        defer {
            // The spare first: it stops its backup node, which stops that node's standby QEMU.
            AgentPair.stop(processes.reversed(), grace: .seconds(20), directory: directory)
            etcd?.stop()
            for file in (try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? [] where file.contains(vm) {
                try? FileManager.default.removeItem(atPath: "/dev/shm/\(file)")
            }
            try? FileManager.default.removeItem(atPath: directory)
        }
        let certs = try runCLI(["certs", "init", "--dir", "\(directory)/certs", "--nodes", "primary,backup,\(EtcdProcess.serverName),operator"])
        try #require(certs.status == 0, "\(certs.stderr)")
        // The spare joins later, from the same CA.
        let added = try runCLI(["certs", "add", "--dir", "\(directory)/certs", "--node", "spare-s"])
        try #require(added.status == 0, "\(added.stderr)")
        etcd = try EtcdProcess(certificates: "\(directory)/certs")
        let endpoint = etcd!.clientAddress
        let fleet = { (host: String) in "\n[fleet]\nendpoints = [\"\(endpoint)\"]\nhost = \"\(host)\"\npublish_ms = 200\nlease_ttl_s = 2\n" }
        let port = LoopbackPorts.free(span: 32)
        // A second heartbeat path (UDP) on both nodes, and on the spare.
        let datagrams = { (listen: UInt16, peer: UInt16) in "[heartbeat]\nudp_listen = \"127.0.0.1:\(listen)\"\nudp_peer = \"127.0.0.1:\(peer)\"\n" }
        let configs = try AgentPair.writeConfigs(
            in: directory, port: port, vm: vm, guest: TestGuest.image, cmdline: "understudy.run=counter",
            replicaDirectory: "/dev/shm/understudy-\(vm)-b",
            primaryExtra: fleet("hv-p") + "[failover]\ngrace_ms = 200\nreconnect_ms = 200\n" + datagrams(port + 1, port + 2),
            backupExtra: fleet("hv-b") + datagrams(port + 2, port + 1))
        // The spare finds the guest's kernel and initrd by file name in its boot directory.
        let spareConfig = "\(directory)/spare.toml"
        try FleetScenario.linkBootDirectory("\(directory)/boot", guest: TestGuest.image)
        try FleetScenario.writeSpareConfiguration(to: spareConfig, node: "spare-s", certificates: "\(directory)/certs", endpoints: [endpoint],
                                                  host: "hv-s", portBase: port + 10, replicaDirectory: "/dev/shm/understudy-\(vm)-s",
                                                  stateDirectory: "\(directory)/spare-state", bootDirectory: "\(directory)/boot",
                                                  tapPrefix: "usp", maxBackups: 2)
        var spareText = TOMLText(try String(contentsOfFile: spareConfig, encoding: .utf8))
        spareText.set("udp_host", in: "spare", to: "\"127.0.0.1\"")
        try spareText.text.write(toFile: spareConfig, atomically: true, encoding: .utf8)
        let registry = FleetRegistry(endpoints: [try Endpoint(parsing: endpoint)], tls: etcd!.clientTLS(node: "operator"))
        func primaryRecord() -> FleetRecord? { (try? registry.records())?.first { $0.vm == vm && $0.role == .primary } }

        let backup = try AgentPair.start(["backup", "--config", configs.backup, "--log-level", "info"], log: "\(directory)/backup.log")
        processes.append(backup)
        processes.append(try AgentPair.start(["primary", "--config", configs.primary, "--log-level", "info"], log: "\(directory)/primary.log"))
        processes.append(try AgentPair.start(["spare", "--config", spareConfig, "--log-level", "info"], log: "\(directory)/spare.log"))
        try #require(eventually(within: .seconds(180), every: .milliseconds(200)) { primaryRecord()?.state == "protecting" },
                     "never protected: \(String(describing: primaryRecord()))")
        #expect(primaryRecord()?.peer == "backup")
        #expect((try? registry.descriptions())?[vm]?.primaryNode == "primary", "the primary describes its VM for spares")
        #expect((try? registry.claims())?[vm] == nil, "a protected VM is claimed by nobody")

        // The backup host dies: agent and standby QEMU at once.
        let killedAt = ContinuousClock.now
        kill(backup.processIdentifier, SIGKILL)
        backup.waitUntilExit()
        AgentPair.killQEMU(runDirectory: "\(directory)/run-backup", of: directory)
        try #require(eventually(within: .seconds(60), every: .milliseconds(100)) { (try? registry.claims())?[vm] != nil },
                     "no spare claimed the VM: \(String(describing: primaryRecord()))")
        let claim = try #require(try registry.claims()[vm]?.claim)
        #expect(claim.node == "spare-s")
        #expect(claim.lostBackup == "backup")
        #expect(claim.listen == "127.0.0.1:\(port + 10)")
        #expect(claim.udp == "127.0.0.1:\(port + 10)", "its backup node's datagram endpoint (spare.udp_host, the slot's port)")
        try #require(eventually(within: .seconds(240), every: .milliseconds(100)) {
            primaryRecord().map { $0.peer == "spare-s" && $0.state == "protecting" } ?? false
        }, "the primary never protected to the spare: \(String(describing: primaryRecord()))")
        let reprotected = ContinuousClock.now - killedAt
        print("SPARE-REPROTECTED-MS \(Int(reprotected.seconds * 1000)) (reprotect_after_s = 2, lease_ttl_s = 2, 128 MiB TCG guest)")
        let spareRecord = (try? registry.records())?.first { $0.vm == vm && $0.node == "spare-s" }
        #expect(spareRecord?.role == .backup)
        #expect(spareRecord?.host == "hv-s")
        #expect(eventually(within: .seconds(10), every: .milliseconds(100)) {
            ((try? registry.records())?.first { $0.vm == vm && $0.node == "spare-s" }?.committedEpoch ?? 0) > 0
        }, "the spare's replica commits checkpoints")
        #expect(try FleetPeerRecord(directory: "\(directory)/state-primary").load()?.name == "spare-s", "a restart of the primary keeps the spare")
        let primaryStatus = try? JSONDecoder().decode(AgentStatus.self, from: ControlServer.request("status", path: "\(directory)/run-primary/control.sock"))
        #expect(primaryStatus?.primary?.heartbeatDatagrams == "to 127.0.0.1:\(port + 10) (spare-s)", "the primary's datagrams go to the spare")
        let spareNode = try AgentConfiguration(contentsOfFile: "\(directory)/spare-state/\(vm)/backup.toml")
        #expect(spareNode.heartbeatDatagrams?.peer == Endpoint(host: "127.0.0.1", port: port + 1), "the spare's node hears the primary's")

        // The lost backup comes back: it finds the claim and stands down.
        let returned = try AgentPair.start(["backup", "--config", configs.backup, "--log-level", "info"], log: "\(directory)/backup-2.log")
        processes.insert(returned, at: 0)
        #expect(eventually(within: .seconds(20), every: .milliseconds(200)) {
            (try? registry.records())?.contains { $0.vm == vm && $0.node == "backup" && $0.state == "stood-down" } ?? false
        }, "the returning backup does not report stood-down")
        let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm/understudy-\(vm)-b")) ?? []
        #expect(leftovers.isEmpty, "its stale replica is removed: \(leftovers)")
        #expect(returned.isRunning, "a stood-down node stays, to report why")
        #expect(primaryRecord().map { $0.peer == "spare-s" && $0.state == "protecting" } ?? false, "the VM stays protected by the spare")
        #expect((try? registry.claims())?[vm]?.claim.node == "spare-s", "nothing doubles: one claim, the spare's")
    }
}
