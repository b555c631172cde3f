import Testing
@testable import UnderstudyAgent

/// What a node does about its VM's spare claim: a running backup the claim replaced stands down
/// (once no primary is connected), the node running the VM follows the spare, and a registry
/// out of reach changes nothing.
@Suite("Fleet claim decisions")
struct FleetClaimStateMachineTests {
    private let primary = FleetPeerRecord.Peer(name: "node-a", address: "192.0.2.1:7400")

    private func claim(by node: String, lost: String = "node-b") -> SpareClaim {
        SpareClaim(host: "hv-s", node: node, listen: "192.0.2.9:7400", lostBackup: lost, claimedAt: 0)
    }

    private func backup() -> FleetClaimStateMachine {
        FleetClaimStateMachine(node: "node-b", peer: primary)
    }

    @Test func aClaimThatReplacesABackupWithNoPrimaryConnectedStandsItDown() {
        var machine = backup()
        #expect(machine.observe(.claim(nil), as: .backup(sessionConnected: false)) == [], "no claim: it serves on")
        let spare = claim(by: "spare-s")
        #expect(machine.observe(.claim(spare), as: .backup(sessionConnected: false)) == [.standDown(spare)])
    }

    @Test func aClaimForAnotherNodeLeavesTheBackupServing() {
        var machine = backup()
        #expect(machine.observe(.claim(claim(by: "node-b", lost: "node-x")), as: .backup(sessionConnected: false)) == [],
                "the claim that made this node the backup (it is the spare)")
        #expect(machine.observe(.claim(claim(by: "node-a", lost: "node-x")), as: .backup(sessionConnected: false)) == [],
                "a claim naming its primary (the pair a claim made, after a switchover)")
    }

    @Test func anUnreadableClaimNeverStandsTheBackupDownAndIsReportedOncePerOutage() {
        var machine = backup()
        #expect(machine.observe(.unreadable("connection refused"), as: .backup(sessionConnected: false)) == [.warnUnreachable("connection refused")])
        #expect(machine.observe(.unreadable("connection refused"), as: .backup(sessionConnected: false)) == [])
        let spare = claim(by: "spare-s")
        #expect(machine.observe(.claim(spare), as: .backup(sessionConnected: false)) == [.noteReachable, .standDown(spare)],
                "once readable, the claim decides")
    }

    @Test func aBackupWithAPrimaryConnectedWaitsUntilTheSessionEnds() {
        var machine = backup()
        let spare = claim(by: "spare-s")
        #expect(machine.observe(.claim(spare), as: .backup(sessionConnected: true)) == [.awaitSessionEnd(spare)])
        #expect(machine.observe(.claim(spare), as: .backup(sessionConnected: true)) == [], "said once")
        #expect(machine.observe(.claim(spare), as: .backup(sessionConnected: false)) == [.standDown(spare)])
    }

    @Test func aClaimWithAnAddressThatDoesNotParseIsNotFollowed() {
        let configured = FleetPeerRecord.Peer(name: "node-b", address: "192.0.2.2:7400")
        var machine = FleetClaimStateMachine(node: "node-a", peer: configured)
        for bad in [SpareClaim(host: "hv-s", node: "spare-s", listen: "no-port", lostBackup: "node-b", claimedAt: 0),
                    SpareClaim(host: "hv-s", node: "spare-s", listen: "192.0.2.9:7400", udp: "192.0.2.9:http", lostBackup: "node-b", claimedAt: 0)] {
            let actions = machine.observe(.claim(bad), as: .primary)
            guard case .ignoreMalformed(bad, _)? = actions.first, actions.count == 1 else {
                Issue.record("\(bad): \(actions)")
                continue
            }
            #expect(machine.observe(.claim(bad), as: .primary) == [], "said once")
            #expect(machine.peer == configured)
        }
        let good = claim(by: "spare-s")
        #expect(machine.observe(.claim(good), as: .primary) == [.follow(FleetPeerRecord.Peer(name: "spare-s", address: "192.0.2.9:7400"), good)])
    }

    @Test func theNodeRunningTheVMFollowsTheSpareOnceAndANodeBetweenRolesDoesNothing() {
        var machine = FleetClaimStateMachine(node: "node-a", peer: FleetPeerRecord.Peer(name: "node-b", address: "192.0.2.2:7400"))
        let spare = claim(by: "spare-s")
        #expect(machine.observe(.claim(spare), as: .neither) == [])
        let next = FleetPeerRecord.Peer(name: "spare-s", address: "192.0.2.9:7400")
        #expect(machine.observe(.claim(spare), as: .primary) == [.follow(next, spare)])
        #expect(machine.peer == next)
        #expect(machine.observe(.claim(spare), as: .primary) == [], "the spare is its peer now")
        #expect(machine.observe(.claim(spare), as: .backup(sessionConnected: false)) == [], "nor does a switchover to the spare make it stale")
    }

    @Test func theFollowedSpareCarriesItsHeartbeatDatagramEndpoint() {
        var machine = FleetClaimStateMachine(node: "node-a", peer: FleetPeerRecord.Peer(name: "node-b", address: "192.0.2.2:7400"))
        let spare = SpareClaim(host: "hv-s", node: "spare-s", listen: "192.0.2.9:7400", udp: "198.51.100.9:7400", lostBackup: "node-b", claimedAt: 0)
        #expect(machine.observe(.claim(spare), as: .primary)
                == [.follow(FleetPeerRecord.Peer(name: "spare-s", address: "192.0.2.9:7400", udp: "198.51.100.9:7400"), spare)])
    }
}
