import Foundation
import Testing
import UnderstudyHarness
import UnderstudySystem
import UnderstudyWitness

/// The harness's three-member cluster itself: a killed member keeps its data and rejoins with
/// it, and `stop()` leaves no process and no directory behind.
@Suite(.enabled(if: EtcdProcess.isInstalled, "needs /usr/bin/etcd (Debian's etcd-server)"))
struct EtcdClusterTests {
    @Test func aKilledMemberRejoinsWithItsDataAndStopRemovesEverything() throws {
        let cluster = try EtcdCluster(size: 3)
        defer { cluster.stop() }
        #expect(Set(cluster.members.map(\.clientPort) + cluster.members.map(\.peerPort)).count == 6, "ports of their own")
        #expect(Set(cluster.members.map(\.name)).count == 3 && Set(cluster.members.map(\.directory)).count == 3)
        let all = EtcdClient(endpoints: cluster.endpoints, timeout: .seconds(1))
        try all.put([("/test/before", "1")], lease: 0)

        cluster.kill(member: 0)
        #expect(!cluster.isRunning(member: 0))
        #expect(FileManager.default.fileExists(atPath: "\(cluster.members[0].directory)/data"), "a killed member keeps its data")
        let first = EtcdClient(endpoints: [cluster.endpoints[0]], timeout: .milliseconds(300))
        #expect(throws: WitnessError.self) { try first.get("/test/before") }
        try all.put([("/test/while", "2")], lease: 0)

        try cluster.restart(member: 0)
        #expect(cluster.isRunning(member: 0))
        #expect(try first.range(prefix: "/test/").map(\.value) == ["1", "2"], "what it had, and what it missed")
        #expect(throws: HarnessError.self) { try cluster.restart(member: 0) }

        cluster.stop()
        #expect(cluster.members.allSatisfy { !FileManager.default.fileExists(atPath: $0.directory) })
        #expect(throws: WitnessError.self) { try all.get("/test/before") }
        #expect(throws: HarnessError.self) { try cluster.restart(member: 1) }
    }
}
