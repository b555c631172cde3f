import Foundation
import Testing
@testable import UnderstudyAgent

/// When a spare host claims a VM whose backup is gone (time passed in, the registry's reads given).
@Suite("Spare claim state machine")
struct SpareClaimStateMachineTests {
    let start = ContinuousClock.now

    func at(_ seconds: Int) -> ContinuousClock.Instant { start + .seconds(seconds) }

    /// - Parameter extra: more of the primary's configuration (TOML tables after `[backup]`).
    static func description(vm: String = "web", extra: String = "") throws -> VMDescriptionRecord {
        let configuration = try AgentConfiguration(document: TOMLDocument(parsing: """
            [node]
            name = "node-a"
            certificates = "/etc/understudy/certs"
            [peer]
            name = "node-b"
            address = "192.0.2.2:7400"
            [vm]
            id = "\(vm)"
            memory_mib = 256
            kernel = "/var/lib/understudy/\(vm)/vmlinuz"
            [backup]
            listen = "192.0.2.1:7400"
            replica_dir = "/dev/shm/understudy/\(vm)"
            \(extra)
            """, source: "test.toml"))
        return VMDescriptionRecord(configuration: configuration, host: "hv-a", publishedAt: 0)
    }

    func primary(_ state: String, peer: String = "node-b", vm: String = "web", host: String = "hv-a") -> FleetRecord {
        FleetRecord(vm: vm, host: host, node: "node-a", role: .primary, state: state, peer: peer, publishedAt: 0)
    }

    func backup(node: String = "node-b", host: String = "hv-b", vm: String = "web") -> FleetRecord {
        FleetRecord(vm: vm, host: host, node: node, role: .backup, state: "serving", peer: "node-a", publishedAt: 0)
    }

    func capacity(slots: Int = 2, host: String = "hv-s") -> HostCapacity {
        HostCapacity(host: host, resources: HostResources(memoryTotalBytes: 8 << 30, memoryAvailableBytes: 4 << 30),
                     slotMemoryBytes: 256 << 20, maxPrimaries: 0, maxBackups: slots, records: [], publishedAt: 0)
    }

    func observation(_ records: [FleetRecord], claims: [String: FleetRegistry.ClaimEntry] = [:], capacity: HostCapacity? = nil,
                     serving: Set<String> = []) throws -> SpareClaimStateMachine.Observation {
        SpareClaimStateMachine.Observation(records: records, descriptions: ["web": try Self.description()], claims: claims,
                                           capacity: capacity ?? self.capacity(), serving: serving)
    }

    @Test func claimsAVMWhoseBackupIsGoneOnceItWasUnprotectedLongEnough() throws {
        var machine = SpareClaimStateMachine(host: "hv-s", reprotectAfter: .seconds(30))
        #expect(machine.observe(try observation([primary("protecting"), backup()]), at: at(0)) == nil)
        #expect(machine.observe(try observation([primary("holding")]), at: at(1)) == nil, "the time starts now")
        #expect(machine.observe(try observation([primary("unprotected")]), at: at(30)) == nil)
        let claim = machine.observe(try observation([primary("unprotected")]), at: at(31))
        #expect(claim?.vm == "web")
        #expect(claim?.replacing == nil)
        #expect(claim?.lostBackup == "node-b")
        #expect(claim?.description.primaryNode == "node-a")
    }

    @Test func theBackupComingBackOrTheVMProtectedAgainRestartsTheTime() throws {
        var machine = SpareClaimStateMachine(host: "hv-s", reprotectAfter: .seconds(30))
        _ = machine.observe(try observation([primary("unprotected")]), at: at(0))
        #expect(machine.observe(try observation([primary("unprotected"), backup()]), at: at(20)) == nil, "the backup publishes again")
        #expect(machine.observe(try observation([primary("unprotected")]), at: at(31)) == nil, "counted from 31 s, not from 0")
        #expect(machine.observe(try observation([primary("protecting")]), at: at(50)) == nil)
        #expect(machine.observe(try observation([primary("connecting")]), at: at(70)) == nil)
        #expect(machine.observe(try observation([primary("connecting")]), at: at(100)) != nil)
    }

    @Test func neverClaimsWithoutCapacityNorItsOwnPrimaryNorTwice() throws {
        var full = SpareClaimStateMachine(host: "hv-s", reprotectAfter: .seconds(1))
        _ = full.observe(try observation([primary("unprotected")], capacity: capacity(slots: 0)), at: at(0))
        #expect(full.observe(try observation([primary("unprotected")], capacity: capacity(slots: 0)), at: at(5)) == nil, "no backup slot")
        let small = HostCapacity(host: "hv-s", resources: HostResources(memoryTotalBytes: 1 << 30, memoryAvailableBytes: 1 << 30,
                                                                        replicaSpaceTotalBytes: 1 << 30, replicaSpaceFreeBytes: 128 << 20),
                                 slotMemoryBytes: 64 << 20, maxPrimaries: nil, maxBackups: nil, records: [], publishedAt: 0)
        #expect(full.observe(try observation([primary("unprotected")], capacity: small), at: at(6)) == nil, "256 MiB do not fit in 128 MiB")
        var unknown = try observation([primary("unprotected")])
        unknown.capacity = nil
        #expect(full.observe(unknown, at: at(7)) == nil, "unknown capacity")

        var own = SpareClaimStateMachine(host: "hv-a", reprotectAfter: .seconds(1))
        _ = own.observe(try observation([primary("unprotected")]), at: at(0))
        #expect(own.observe(try observation([primary("unprotected")]), at: at(5)) == nil, "the VM's primary host")

        var serving = SpareClaimStateMachine(host: "hv-s", reprotectAfter: .seconds(1))
        _ = serving.observe(try observation([primary("unprotected")], serving: ["web"]), at: at(0))
        #expect(serving.observe(try observation([primary("unprotected")], serving: ["web"]), at: at(5)) == nil, "already a backup here")
    }

    @Test func noDescriptionOrNoSinglePrimaryMeansNoClaim() throws {
        var machine = SpareClaimStateMachine(host: "hv-s", reprotectAfter: .seconds(1))
        var undescribed = try observation([primary("unprotected")])
        undescribed.descriptions = [:]
        _ = machine.observe(undescribed, at: at(0))
        #expect(machine.observe(undescribed, at: at(5)) == nil)
        let two = [primary("unprotected"), primary("unprotected", host: "hv-c")]
        _ = machine.observe(try observation(two), at: at(6))
        #expect(machine.observe(try observation(two), at: at(10)) == nil, "two primaries: a problem for people, not for spares")
        _ = machine.observe(try observation([primary("fenced")]), at: at(11))
        #expect(machine.observe(try observation([primary("fenced")]), at: at(15)) == nil)
    }

    @Test func aLiveClaimIsLeftAloneAndAStaleOneReplaced() throws {
        let other = SpareClaim(host: "hv-t", node: "spare-t", listen: "192.0.2.9:7400", lostBackup: "node-b", claimedAt: 0)
        let claims = ["web": FleetRegistry.ClaimEntry(claim: other, modRevision: 41)]
        var machine = SpareClaimStateMachine(host: "hv-s", reprotectAfter: .seconds(30))
        _ = machine.observe(try observation([primary("unprotected"), backup(node: "spare-t", host: "hv-t")], claims: claims), at: at(0))
        #expect(machine.observe(try observation([primary("unprotected"), backup(node: "spare-t", host: "hv-t")], claims: claims), at: at(40)) == nil,
                "the claimed spare serves the VM: the primary is about to follow")
        #expect(machine.observe(try observation([primary("unprotected")], claims: claims), at: at(50)) == nil,
                "its spare stopped publishing: the claim is stale (unchanged since 0 s), and the VM's own time starts now")
        #expect(machine.observe(try observation([primary("unprotected")], claims: claims), at: at(79)) == nil)
        let claim = machine.observe(try observation([primary("unprotected")], claims: claims), at: at(80))
        #expect(claim?.replacing == 41, "compare-and-swap on the stale claim's revision")
        #expect(claim?.lostBackup == "node-b")
    }

    @Test func aClaimedSpareThePrimaryFollowedAndLostIsReplacedLikeAnyBackup() throws {
        let followed = SpareClaim(host: "hv-t", node: "spare-t", listen: "192.0.2.9:7400", lostBackup: "node-b", claimedAt: 0)
        let claims = ["web": FleetRegistry.ClaimEntry(claim: followed, modRevision: 41)]
        var machine = SpareClaimStateMachine(host: "hv-s", reprotectAfter: .seconds(30))
        _ = machine.observe(try observation([primary("unprotected", peer: "spare-t")], claims: claims), at: at(0))
        let claim = machine.observe(try observation([primary("unprotected", peer: "spare-t")], claims: claims), at: at(30))
        #expect(claim?.replacing == 41)
        #expect(claim?.lostBackup == "spare-t")
    }
}
