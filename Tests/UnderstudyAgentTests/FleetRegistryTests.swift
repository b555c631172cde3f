import Foundation
import Logging
import Synchronization
import Testing
import UnderstudyHarness
import UnderstudySystem
import UnderstudyTransport
@testable import UnderstudyAgent

/// The fleet registry against a real etcd with TLS and client certificates: publishers driven
/// by closures in place of nodes (no VM), read back through `understudy fleet`.
@Suite(.enabled(if: EtcdProcess.isInstalled, "needs /usr/bin/etcd (Debian's etcd-server)"))
struct FleetRegistryTests {
    /// etcd with certificates for itself, two hosts' nodes and an operator.
    private final class Registry {
        let certificates: TemporaryDirectory
        let etcd: EtcdProcess
        var directory: String { "\(certificates.path)/certs" }

        init() throws {
            certificates = try TemporaryDirectory("fleet-ca")
            do {
                _ = try CertificateAuthority.initialize(directory: "\(certificates.path)/certs",
                                                        nodes: [EtcdProcess.serverName, "node-a", "node-b", "operator"])
                etcd = try EtcdProcess(certificates: "\(certificates.path)/certs")
            } catch {
                certificates.remove()
                throw error
            }
        }

        func configuration(host: String, node: String, ttl: Duration = .seconds(2)) -> FleetConfiguration {
            FleetConfiguration(endpoints: [Endpoint(host: "127.0.0.1", port: etcd.clientPort)], tls: etcd.clientTLS(node: node), host: host,
                               leaseTTL: ttl, publishPeriod: .milliseconds(200), maxPrimaries: 4, maxBackups: 4, slotMemoryBytes: 64 << 20,
                               requestTimeout: .milliseconds(300))
        }

        /// `understudy fleet SUBCOMMAND --json` as the operator, decoded.
        func cli(_ subcommand: String) throws -> [String: Any] {
            let result = try runCLI(["fleet", subcommand, "--json", "--etcd", etcd.clientAddress, "--certs", directory, "--node", "operator"])
            guard result.status == 0 else { throw HarnessError("fleet \(subcommand) exited \(result.status): \(result.stderr)") }
            return try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] ?? [:]
        }

        func vms() throws -> [[String: Any]] { try cli("status")["vms"] as? [[String: Any]] ?? [] }

        func stop() {
            etcd.stop()
            certificates.remove()
        }
    }

    private let logger = Logger(label: "fleet-test")

    private func primary(_ state: PrimaryStatus.Phase) -> AgentStatus {
        var status = PrimaryStatus(vm: "web", state: state)
        status.committedEpoch = 42
        status.protectionMode = "synchronous"
        status.pauseMillisecondsP99 = 2
        return .primary(status)
    }

    @Test func twoNodesPublishAndADeadNodesEntriesVanishWithItsLease() throws {
        let registry = try Registry()
        defer { registry.stop() }
        let state = Mutex<PrimaryStatus.Phase>(.protecting)
        let a = FleetPublisher(configuration: registry.configuration(host: "hv-a", node: "node-a"), logger: logger) { [self] in
            [FleetRecord(status: primary(state.withLock { $0 }), host: "hv-a", node: "node-a", peer: "node-b", publishedAt: 0)]
        }
        defer { a.stop() }
        let b = FleetPublisher(configuration: registry.configuration(host: "hv-b", node: "node-b"), logger: logger) {
            var record = FleetRecord(status: .backup(BackupStatus(vm: "web", state: .serving)), host: "hv-b", node: "node-b", peer: "node-a",
                                     publishedAt: 0)
            (record.lastDrillAt, record.lastDrillPassed, record.lastDrillRecoverySeconds) = (Date().timeIntervalSince1970 - 60, true, 1.5)
            return [record]
        }

        #expect(try eventually(within: .seconds(10), every: .milliseconds(200)) {
            try registry.vms().first?["backupHost"] as? String == "hv-b"
        }, "both nodes' entries appear")
        let row = try #require(try registry.vms().first)
        #expect(row["vm"] as? String == "web" && row["primaryHost"] as? String == "hv-a" && row["problem"] as? String == "healthy", "\(row)")
        #expect(row["committedEpoch"] as? Int == 42 && row["lastDrillRecoverySeconds"] as? Double == 1.5)
        let hosts = try registry.cli("hosts")["hosts"] as? [[String: Any]] ?? []
        #expect(hosts.map { $0["host"] as? String } == ["hv-a", "hv-b"])
        #expect(hosts.first?["primaries"] as? Int == 1 && hosts.first?["primarySlots"] as? Int ?? 0 >= 0 && hosts.last?["backups"] as? Int == 1)
        #expect(hosts.first?["primarySlots"] as? Int ?? 9 <= 3, "max_primaries 4 minus the one it runs")

        // A state change shows within a fraction of the period, not the lease.
        state.withLock { $0 = .holding }
        #expect(try eventually(within: .seconds(5), every: .milliseconds(100)) { try registry.vms().first?["problem"] as? String == "unprotected" })
        state.withLock { $0 = .protecting }

        // Node b dies: nothing revokes its lease, etcd expires it.
        b.stop(revokingLease: false)
        let died = ContinuousClock.now
        #expect(try registry.vms().first?["backupHost"] as? String == "hv-b", "still there right after: the lease, not a revocation, removes it")
        let vanished = try eventually(within: .seconds(10), every: .milliseconds(100)) {
            let rows = try registry.vms()
            let hosts = try registry.cli("hosts")["hosts"] as? [[String: Any]] ?? []
            return rows.count == 1 && rows[0]["backupHost"] == nil && hosts.map { $0["host"] as? String } == ["hv-a"]
        }
        let after = ContinuousClock.now - died
        #expect(vanished, "b's entries vanish with its lease")
        logger.notice("a dead node's entries vanished after \(after) (lease TTL 2 s)")
        #expect(try registry.vms().first?["primaryHost"] as? String == "hv-a", "a's entries stay, renewed")

        // An orderly stop revokes: gone at once.
        a.stop()
        #expect(try registry.vms().isEmpty)
    }

    @Test func etcdDownLeavesTheNodeAloneAndThePublisherCatchesUp() throws {
        let registry = try Registry()
        defer { registry.stop() }
        registry.etcd.pause()
        let calls = Mutex(0)
        let a = FleetPublisher(configuration: registry.configuration(host: "hv-a", node: "node-a"), logger: logger) { [self] in
            calls.withLock { $0 += 1 }
            return [FleetRecord(status: primary(.protecting), host: "hv-a", node: "node-a", peer: "node-b", publishedAt: 0)]
        }
        defer { a.stop() }
        Thread.sleep(forTimeInterval: 1)
        #expect(calls.withLock { $0 } >= 1, "the publisher runs on while etcd does not answer")
        registry.etcd.resume()
        #expect(try eventually(within: .seconds(10), every: .milliseconds(200)) { try registry.vms().count == 1 }, "published once etcd answers")
    }

    /// `understudy backup` with a `[fleet]` table publishes its VM, and an orderly stop takes it out
    /// at once. No guest: the backup serves a replica and waits for a primary that never comes.
    @Test func aRunningBackupNodePublishesItsVM() throws {
        let registry = try Registry()
        defer { registry.stop() }
        let directory = try TemporaryDirectory("fleet-node")
        defer { directory.remove() }
        let vm = "fleet-\(UUID().uuidString.prefix(6).lowercased())"
        let config = "\(directory.path)/backup.toml"
        try """
            [node]
            name = "node-b"
            certificates = "\(registry.directory)"
            [peer]
            name = "node-a"
            [vm]
            id = "\(vm)"
            memory_mib = 16
            kernel = "\(directory.path)/no-kernel"
            run_dir = "\(directory.path)/run"
            [backup]
            listen = "127.0.0.1:0"
            replica_dir = "\(directory.path)/replica"
            [fleet]
            endpoints = ["\(registry.etcd.clientAddress)"]
            host = "hv-b"
            lease_ttl_s = 2
            publish_ms = 200
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let node = try AgentPair.start(["backup", "--config", config, "--log-level", "info"], log: "\(directory.path)/backup.log")
        defer {
            if node.isRunning { kill(node.processIdentifier, SIGKILL) }
            node.waitUntilExit()
        }
        let published = try eventually(within: .seconds(20), every: .milliseconds(200)) {
            try registry.vms().first { $0["vm"] as? String == vm }?["backupHost"] as? String == "hv-b"
        }
        let log = { (try? String(contentsOfFile: "\(directory.path)/backup.log", encoding: .utf8)) ?? "" }
        #expect(published, "the node's entry: \(log())")
        let row = try registry.vms().first { $0["vm"] as? String == vm }
        #expect(row?["problem"] as? String == "unprotected" && row?["state"] as? String == "serving", "no primary runs it: \(String(describing: row))")
        kill(node.processIdentifier, SIGTERM)
        node.waitUntilExit()
        #expect(try registry.vms().isEmpty, "an orderly stop revokes the lease: \(log())")
    }
}
