import Foundation
import Logging
import Testing
import UnderstudyHarness
import UnderstudySystem
import UnderstudyTransport
import UnderstudyWitness
@testable import UnderstudyAgent

/// The fleet registry on a three-member etcd cluster (issue 21 item 5): a member's death, the
/// leader's included, changes nothing a publisher or `fleet status` sees, and a member that
/// comes back doubles nothing.
@Suite(.enabled(if: EtcdProcess.isInstalled, "needs /usr/bin/etcd (Debian's etcd-server)"))
struct FleetRegistryClusterTests {
    private let logger = Logger(label: "fleet-cluster-test")

    @Test func aPublisherKeepsItsEntriesOnTheSameLeaseWhileTheLeaderItTalksToIsKilled() throws {
        let certificates = try TemporaryDirectory("fleet-cluster-ca")
        defer { certificates.remove() }
        let directory = "\(certificates.path)/certs"
        try CertificateAuthority.initialize(directory: directory, nodes: [EtcdProcess.serverName, "node-a", "operator"])
        let cluster = try EtcdCluster(size: 3, certificates: directory)
        defer { cluster.stop() }
        var leader: Int?
        _ = eventually(within: .seconds(10), every: .milliseconds(50)) {
            leader = cluster.leader()
            return leader != nil
        }
        let victim = try #require(leader)
        let all = cluster.endpoints
        let endpoints = [all[victim]] + all.indices.filter { $0 != victim }.map { all[$0] }

        let configuration = FleetConfiguration(endpoints: endpoints, tls: cluster.clientTLS(node: "node-a"), host: "hv-a",
                                               leaseTTL: .seconds(5), publishPeriod: .milliseconds(200), maxPrimaries: 4, maxBackups: 4,
                                               slotMemoryBytes: 64 << 20, requestTimeout: .milliseconds(500))
        let publisher = FleetPublisher(configuration: configuration, logger: logger) {
            var status = PrimaryStatus(vm: "web", state: .protecting)
            status.committedEpoch = 7
            return [FleetRecord(status: .primary(status), host: "hv-a", node: "node-a", peer: "node-b", publishedAt: 0)]
        }
        defer { publisher.stop() }
        let registry = FleetRegistry(endpoints: all, tls: cluster.clientTLS(node: "operator"), timeout: .milliseconds(500))
        let keys = [FleetRegistry.key(host: "hv-a"), FleetRegistry.key(vm: "web", host: "hv-a")]
        #expect(try eventually(within: .seconds(10), every: .milliseconds(50)) {
            try registry.client.range(prefix: FleetRegistry.prefix).map(\.key) == keys
        }, "the publisher's entries appear")
        let lease = try #require(try registry.client.range(prefix: FleetRegistry.prefix).first?.lease)

        cluster.kill(member: victim)
        // Read as `fleet status` does, for 6 s: every read that is answered
        // (none is while the survivors elect a leader) has both entries, on the same lease.
        let killed = ContinuousClock.now
        var answered = 0
        var unanswered = 0
        var missing: [String] = []
        while ContinuousClock.now - killed < .seconds(6) {
            do {
                let found = try registry.client.range(prefix: FleetRegistry.prefix)
                answered += 1
                if found.map(\.key) != keys || found.contains(where: { $0.lease != lease }) { missing.append("\(found)") }
            } catch {
                unanswered += 1
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        logger.notice("after the leader's kill: \(answered) reads answered, \(unanswered) not")
        #expect(missing.isEmpty, "entries and lease unchanged in every read: \(missing.prefix(3))")
        #expect(answered > 0)
        let read = try registry.read()
        #expect(read.records.map(\.vm) == ["web"] && read.records.first?.committedEpoch == 7 && read.hosts.map(\.host) == ["hv-a"])

        try cluster.restart(member: victim)
        // The member that came back serves them, once each, on the same lease; so does `fleet status`.
        let rejoined = EtcdClient(endpoints: [all[victim]], timeout: .seconds(1), tls: cluster.clientTLS(node: "operator"))
        let there = try rejoined.range(prefix: FleetRegistry.prefix)
        #expect(there.map(\.key) == keys && there.allSatisfy { $0.lease == lease }, "\(there)")
        let cli = try runCLI(["fleet", "status", "--json", "--etcd", all.map(\.description).joined(separator: ","), "--certs", directory,
                              "--node", "operator"])
        #expect(cli.status == 0, "\(cli.stderr)")
        let vms = (try JSONSerialization.jsonObject(with: Data(cli.stdout.utf8)) as? [String: Any])?["vms"] as? [[String: Any]] ?? []
        #expect(vms.count == 1 && vms.first?["primaryHost"] as? String == "hv-a", "\(vms)")
    }
}
