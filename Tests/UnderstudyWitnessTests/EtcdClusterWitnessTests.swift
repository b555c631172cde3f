import Foundation
import Logging
import Synchronization
import Testing
import UnderstudyHarness
import UnderstudySystem
import UnderstudyTransport
import UnderstudyWitness

private let logger = Logger(label: "witness-cluster-test")

/// The witness on a three-member etcd cluster, as a fleet runs it: one member's death (even the
/// leader's, even the one a node talks to) must change nothing a node can see.
@Suite(.enabled(if: EtcdProcess.isInstalled, "needs /usr/bin/etcd (Debian's etcd-server)"))
struct EtcdClusterWitnessTests {
    /// Three members serving TLS with certificates of one CA for themselves and node-a.
    private final class Cluster {
        let certificates: TemporaryDirectory
        let etcd: EtcdCluster

        init() throws {
            certificates = try TemporaryDirectory("cluster-ca")
            do {
                try CertificateAuthority.initialize(directory: "\(certificates.path)/certs", nodes: [EtcdProcess.serverName, "node-a"])
                etcd = try EtcdCluster(size: 3, certificates: "\(certificates.path)/certs")
            } catch {
                certificates.remove()
                throw error
            }
        }

        var tls: TLSConfiguration? { etcd.clientTLS(node: "node-a") }

        /// Every member's endpoint, `first` first: the member the client talks to until it fails.
        func endpoints(first: Int) -> [Endpoint] {
            let all = etcd.endpoints
            return [all[first]] + all.indices.filter { $0 != first }.map { all[$0] }
        }

        /// The leader, once the members agree on one.
        func leader() throws -> Int {
            var found: Int?
            _ = eventually(within: .seconds(10), every: .milliseconds(50)) {
                found = etcd.leader()
                return found != nil
            }
            return try #require(found, "the members agree on a leader")
        }

        func stop() {
            etcd.stop()
            certificates.remove()
        }
    }

    /// What a failover is timed with: a registry write, or a witness lease's renewal.
    private enum Probe: CaseIterable {
        case put, keepAlive
    }

    /// Kills `victim`, the member `client` talks to, and repeats `probe` until it succeeds: how
    /// long after the kill that was (the failover), and why the requests before it failed.
    private func timeFailover(_ cluster: Cluster, killing victim: Int, client: EtcdClient, probe: Probe) throws -> (took: Duration, failures: [String]) {
        let key = "/test/" + UUID().uuidString
        let lease = try client.grantLease(ttl: .seconds(10)).id
        let request = { () throws(WitnessError) in
            switch probe {
            case .put: try client.put([(key, "value")], lease: 0)
            case .keepAlive: #expect(try client.keepAlive(lease: lease) > .zero, "the lease outlives the kill")
            }
        }
        try request()
        cluster.etcd.kill(member: victim)
        let killed = ContinuousClock.now
        var failures: [String] = []
        while ContinuousClock.now - killed < .seconds(10) {
            do {
                try request()
                return (ContinuousClock.now - killed, failures)
            } catch {
                failures.append("\(error)")
            }
        }
        throw HarnessError("no member answered within 10 s of the kill: \(failures)")
    }

    @Test(arguments: Probe.allCases)
    private func aRequestFailsOverToALiveMemberWhenTheFollowerItTalksToIsKilled(_ probe: Probe) throws {
        let cluster = try Cluster()
        defer { cluster.stop() }
        for round in 0..<3 {
            let leader = try cluster.leader()
            let follower = (leader + 1 + round % 2) % 3
            let client = EtcdClient(endpoints: cluster.endpoints(first: follower), timeout: .milliseconds(500), tls: cluster.tls)
            let (took, failures) = try timeFailover(cluster, killing: follower, client: client, probe: probe)
            logger.notice("\(probe) after killing follower \(follower): succeeded \(took.wholeMilliseconds) ms after the kill, failed before: \(failures)")
            #expect(failures.isEmpty, "the first request after a follower's kill goes on to the next member and succeeds")
            try cluster.etcd.restart(member: follower)
        }
    }

    /// No member takes writes or renewals until the survivors elect a leader: the first request
    /// that succeeds comes after the election, and no member's answer is taken for a failure
    /// before that.
    @Test(arguments: Probe.allCases)
    private func aRequestFailsOverOnceTheSurvivorsElectANewLeader(_ probe: Probe) throws {
        let cluster = try Cluster()
        defer { cluster.stop() }
        for _ in 0..<3 {
            let leader = try cluster.leader()
            let client = EtcdClient(endpoints: cluster.endpoints(first: leader), timeout: .milliseconds(500), tls: cluster.tls)
            let (took, failures) = try timeFailover(cluster, killing: leader, client: client, probe: probe)
            logger.notice("\(probe) after killing leader \(leader): succeeded \(took.wholeMilliseconds) ms after the kill, failed before: \(failures)")
            try cluster.etcd.restart(member: leader)
        }
    }

    /// Issue 21 item 5: a node holding the witness key keeps it, on the same lease and term,
    /// while the member it talks to (the leader, the worst case) dies; the member comes back
    /// and nothing doubles.
    @Test func aHeldWitnessLeaseOutlivesTheDeathOfTheLeaderItTalksTo() throws {
        let cluster = try Cluster()
        defer { cluster.stop() }
        let leader = try cluster.leader()
        let vm = "vm-" + UUID().uuidString.prefix(8).lowercased()
        let lost = Mutex<[String]>([])
        // A lease survives a leader's death when 0.57 TTL > 2 election timeouts + the request
        // timeout (OPERATIONS.md, "Running a fleet"): 1.7 s > 1.5 s here, with the test
        // cluster's 500 ms election timeout. (With 2 s it lapsed in one of two runs.)
        let configuration = WitnessConfiguration(endpoints: cluster.endpoints(first: leader), tls: cluster.tls,
                                                 leaseTTL: .seconds(3), requestTimeout: .milliseconds(500))
        let a = try WitnessLease(configuration: configuration, vm: vm, node: "node-a", logger: logger) { reason in
            lost.withLock { $0.append(reason) }
        }
        defer { a.release() }
        try a.acquire(.takeOver, timeout: .seconds(5))
        let reader = EtcdClient(endpoints: cluster.etcd.endpoints, timeout: .seconds(1), tls: cluster.tls)
        let claim = try #require(try reader.get(WitnessConfiguration.key(forVM: vm)))
        let term = try #require(a.term)

        // Each round kills the leader (the first round also the member the node talks to), checks
        // validity for 4 s (the election, and more than one TTL after it), and brings the member back: it rejoins and nothing doubles.
        for round in 0..<3 {
            let victim = try cluster.leader()
            cluster.etcd.kill(member: victim)
            let killed = ContinuousClock.now
            var lapses = 0
            var samples = 0
            while ContinuousClock.now - killed < .seconds(4) {
                samples += 1
                if !a.isValid { lapses += 1 }
                Thread.sleep(forTimeInterval: 0.01)
            }
            #expect(lapses == 0, "round \(round): valid in every one of \(samples) samples after the leader's kill")
            #expect(lost.withLock { $0 }.isEmpty)
            #expect(a.term == term, "no new claim, so no new term")
            #expect(try reader.get(WitnessConfiguration.key(forVM: vm))?.lease == claim.lease, "still the same lease, renewed")

            try cluster.etcd.restart(member: victim)
            // The member that came back serves the same claim and term, once each: read from it alone.
            let rejoined = EtcdClient(endpoints: [cluster.etcd.endpoints[victim]], timeout: .seconds(1), tls: cluster.tls)
            let keys = try rejoined.range(prefix: "/understudy/\(vm)/")
            #expect(keys.map(\.key) == [WitnessConfiguration.key(forVM: vm), WitnessConfiguration.termKey(forVM: vm)])
            #expect(keys.first?.lease == claim.lease && keys.first?.value == "node-a")
            #expect(keys.last?.value == term.encoded)
        }
        #expect(a.isValid && lost.withLock { $0 }.isEmpty && a.term == term)
    }
}
