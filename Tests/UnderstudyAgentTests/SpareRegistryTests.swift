import Foundation
import Logging
import Synchronization
import Testing
import UnderstudyHarness
import UnderstudySystem
import UnderstudyTransport
import UnderstudyWitness
@testable import UnderstudyAgent

/// The spare hosts' registry keys against a real etcd with TLS: VM descriptions and claims.
@Suite(.enabled(if: EtcdProcess.isInstalled, "needs /usr/bin/etcd (Debian's etcd-server)"))
struct SpareRegistryTests {
    private final class Registry {
        let certificates: TemporaryDirectory
        let etcd: EtcdProcess

        init() throws {
            certificates = try TemporaryDirectory("spare-ca")
            do {
                _ = try CertificateAuthority.initialize(directory: "\(certificates.path)/certs", nodes: [EtcdProcess.serverName, "node-a", "node-b", "spare-s"])
                // A spare joining later: its certificate from the same CA (`understudy certs add`), which etcd trusts.
                _ = try CertificateAuthority.add(directory: "\(certificates.path)/certs", node: "spare-t")
                etcd = try EtcdProcess(certificates: "\(certificates.path)/certs")
            } catch {
                certificates.remove()
                throw error
            }
        }

        func registry(node: String) -> FleetRegistry {
            FleetRegistry(endpoints: [Endpoint(host: "127.0.0.1", port: etcd.clientPort)], tls: etcd.clientTLS(node: node))
        }

        func stop() {
            etcd.stop()
            certificates.remove()
        }
    }

    @Test func aPrimarysDescriptionIsPublishedOnItsLeaseAndReadBack() throws {
        let registry = try Registry()
        defer { registry.stop() }
        let a = registry.registry(node: "node-a")
        let description = try SpareClaimStateMachineTests.description()
        let lease = try a.client.grantLease(ttl: .seconds(5))
        let host = HostCapacity(host: "hv-a", resources: HostResources(memoryTotalBytes: 1 << 30, memoryAvailableBytes: 1 << 30),
                                slotMemoryBytes: 1 << 20, maxPrimaries: nil, maxBackups: nil, records: [], publishedAt: 0)
        try a.publish([], host: host, descriptions: [description], lease: lease.id)
        #expect(try registry.registry(node: "spare-s").descriptions() == ["web": description])
        try a.client.revoke(lease: lease.id)
        #expect(try a.descriptions().isEmpty, "it vanishes with the primary's lease")
    }

    @Test func ofTwoSparesClaimingTheSameVMExactlyOneWinsAndAStaleClaimIsReplacedOnce() throws {
        let registry = try Registry()
        defer { registry.stop() }
        let s = registry.registry(node: "spare-s")
        let t = registry.registry(node: "spare-t")
        let fromS = SpareClaim(host: "hv-s", node: "spare-s", listen: "127.0.0.1:7500", lostBackup: "node-b", claimedAt: 1)
        let fromT = SpareClaim(host: "hv-t", node: "spare-t", listen: "127.0.0.1:7600", lostBackup: "node-b", claimedAt: 2)

        // Both read "no claim", then both claim at the same time.
        let start = Latch()
        let winners = Mutex<[Int]>([])
        let threads = [(s, fromS), (t, fromT)].enumerated().map { index, spare in
            JoinableThread(name: "claim-\(index)") {
                _ = start.wait(timeout: .seconds(10))
                if (try? spare.0.claim("web", spare.1, replacing: nil)) == true { winners.withLock { $0.append(index) } }
            }
        }
        start.trigger()
        threads.forEach { $0.join() }
        let won = winners.withLock { $0 }
        #expect(won.count == 1, "one transaction creates the key, the other finds it")
        let winner = try #require(try s.claims()["web"])
        #expect(winner.claim == (won == [0] ? fromS : fromT))

        // The winner is gone: both replace the claim they read; again only one does.
        let next = SpareClaim(host: "hv-s", node: "spare-s", listen: "127.0.0.1:7500", lostBackup: winner.claim.node, claimedAt: 3)
        #expect(try s.claim("web", next, replacing: winner.modRevision))
        #expect(try t.claim("web", fromT, replacing: winner.modRevision) == false, "the revision read is no longer the claim's")
        #expect(try t.claim("web", fromT, replacing: nil) == false, "nor may a claim be created over it")
        #expect(try t.claim(on: "web") == next)
    }

    @Test func aLostBackupThatComesBackFindsTheClaimStandsDownAndRemovesItsReplica() throws {
        let registry = try Registry()
        defer { registry.stop() }
        let root = try TemporaryDirectory("stand-down")
        defer { root.remove() }
        let spare = SpareClaim(host: "hv-s", node: "spare-s", listen: "127.0.0.1:7500", lostBackup: "node-b", claimedAt: 1)
        #expect(try registry.registry(node: "spare-s").claim("web", spare, replacing: nil))
        let replica = "\(root.path)/replica"
        try FileManager.default.createDirectory(atPath: replica, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: "\(replica)/memory.img", contents: Data(repeating: 7, count: 4096))
        let path = try writeBackupConfiguration(root: root.path, replica: replica, registry: registry)
        // As the operator (or systemd) starts it: the node's own process.
        let node = try AgentPair.start(["backup", "--config", path, "--log-level", "info"], log: "\(root.path)/b.log")
        defer { AgentPair.stop([node], directory: root.path) }
        let reader = registry.registry(node: "node-a")
        #expect(eventually(within: .seconds(10), every: .milliseconds(100)) {
            (try? reader.records())?.contains { $0.node == "node-b" && $0.state == "stood-down" } ?? false
        }, "it reports stood-down to the registry: \((try? String(contentsOfFile: "\(root.path)/b.log", encoding: .utf8)) ?? "")")
        #expect(!FileManager.default.fileExists(atPath: "\(replica)/memory.img"), "its stale replica is gone")
        let status = try? JSONDecoder().decode(AgentStatus.self, from: ControlServer.request("status", path: "\(root.path)/run/control.sock"))
        #expect(status?.state == "stood-down")
        #expect(status?.detail?.contains("spare-s") == true)
        #expect(node.isRunning, "it stays, to report why")
    }

    @Test func aRunningBackupThatWasCutOffFindsTheClaimStandsDownAndRemovesItsReplicaWithoutARestart() throws {
        let registry = try Registry()
        defer { registry.stop() }
        let root = try TemporaryDirectory("stand-down-running")
        defer { root.remove() }
        let replica = "\(root.path)/replica"
        let path = try writeBackupConfiguration(root: root.path, replica: replica, registry: registry)
        let log = "\(root.path)/b.log"
        let node = try AgentPair.start(["backup", "--config", path, "--log-level", "info"], log: log)
        defer { AgentPair.stop([node], directory: root.path) }
        let reader = registry.registry(node: "node-a")
        func state() -> String? { (try? reader.records())?.first { $0.node == "node-b" }?.state }
        func logText() -> String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        // No primary ever connects: it is gone, as seen from a backup cut off from it.
        #expect(eventually(within: .seconds(15), every: .milliseconds(100)) { state() == "serving" }, "it serves as the backup first: \(logText())")
        #expect(FileManager.default.fileExists(atPath: "\(replica)/memory.img"))

        // A spare claims the VM in its place, as `understudy spare` does.
        let spare = SpareClaim(host: "hv-s", node: "spare-s", listen: "127.0.0.1:7500", lostBackup: "node-b", claimedAt: 1)
        #expect(try registry.registry(node: "spare-s").claim("web", spare, replacing: nil))
        #expect(eventually(within: .seconds(10), every: .milliseconds(100)) { state() == "stood-down" }, "it stands down while running: \(logText())")
        let status = try? JSONDecoder().decode(AgentStatus.self, from: ControlServer.request("status", path: "\(root.path)/run/control.sock"))
        #expect(status?.state == "stood-down")
        #expect(status?.detail?.contains("spare-s") == true)
        let left = (try? FileManager.default.contentsOfDirectory(atPath: replica)) ?? []
        #expect(left.isEmpty, "its stale replica is gone: \(left)")
        #expect(node.isRunning, "the same process stays, to report why")
        // A stand-down at a start never serves: this one served first, in the same process.
        let text = logText()
        #expect(text.range(of: "backup serving").map { served in text.range(of: "standing down").map { $0.lowerBound > served.upperBound } ?? false } ?? false,
                "it served, then stood down: \(text)")
    }

    /// node-b's backup configuration (peer node-a, VM "web", replica in `replica`) with `[fleet]`; returns its path.
    private func writeBackupConfiguration(root: String, replica: String, registry: Registry) throws -> String {
        let path = "\(root)/b.toml"
        try """
            [node]
            name = "node-b"
            certificates = "\(registry.certificates.path)/certs"
            state_dir = "\(root)/state"
            [peer]
            name = "node-a"
            [vm]
            id = "web"
            memory_mib = 64
            kernel = "/k"
            run_dir = "\(root)/run"
            [backup]
            listen = "127.0.0.1:0"
            replica_dir = "\(replica)"
            [fleet]
            endpoints = ["\(registry.etcd.clientAddress)"]
            host = "hv-b"
            publish_ms = 200
            lease_ttl_s = 2
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func theNodeRunningTheVMFollowsAClaimThatReplacesItsBackupOnce() throws {
        let registry = try Registry()
        defer { registry.stop() }
        let fleet = FleetConfiguration(endpoints: [Endpoint(host: "127.0.0.1", port: registry.etcd.clientPort)], tls: registry.etcd.clientTLS(node: "node-a"),
                                       host: "hv-a", leaseTTL: .seconds(2), publishPeriod: .milliseconds(100), slotMemoryBytes: 1 << 20)
        let followed = Mutex<[String]>([])
        let running = Mutex(false)
        let watcher = FleetClaimWatcher(configuration: fleet, vm: "web", node: "node-a", peer: FleetPeerRecord.Peer(name: "node-b", address: "127.0.0.1:7400"),
                                        logger: Logger(label: "claims-test"), side: { running.withLock { $0 } ? .primary : .neither }) { peer, claim in
            followed.withLock { $0.append("\(peer.name)@\(peer.address ?? "-") for \(claim.lostBackup)") }
        } standDown: { claim in
            Issue.record("the node running the VM never stands down: \(claim)")
        }
        defer { watcher.stop() }
        let spare = SpareClaim(host: "hv-s", node: "spare-s", listen: "127.0.0.1:7500", lostBackup: "node-b", claimedAt: 1)
        #expect(try registry.registry(node: "spare-s").claim("web", spare, replacing: nil))
        Thread.sleep(forTimeInterval: 0.5)
        #expect(followed.withLock { $0 }.isEmpty, "a node not running the VM follows nothing")
        running.withLock { $0 = true }
        #expect(eventually(within: .seconds(5), every: .milliseconds(50)) { !followed.withLock { $0 }.isEmpty })
        Thread.sleep(forTimeInterval: 0.5)
        #expect(followed.withLock { $0 } == ["spare-s@127.0.0.1:7500 for node-b"], "once: the spare is its peer now")
        #expect(watcher.peer == FleetPeerRecord.Peer(name: "spare-s", address: "127.0.0.1:7500"))
    }
}
