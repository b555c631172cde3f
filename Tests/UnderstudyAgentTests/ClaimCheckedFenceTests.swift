import Foundation
import Synchronization
import Testing
import UnderstudyHarness
import UnderstudyWitness
@testable import UnderstudyAgent

/// A node with `[fleet]` never takes the VM over while a spare claim replaced it, and a claim's
/// spare becomes the peer a primary follows across restarts.
@Suite("Spare claims on a node")
struct ClaimCheckedFenceTests {
    struct Unreachable: Error {}

    private func claim(by node: String, lost: String = "node-b") -> SpareClaim {
        SpareClaim(host: "hv-s", node: node, listen: "192.0.2.9:7400", lostBackup: lost, claimedAt: 0)
    }

    @Test func aClaimReplacesANodeWhenItNamesNeitherItNorItsPeer() {
        #expect(claim(by: "spare-s").replaces(node: "node-b", peer: "node-a"), "the lost backup come back")
        #expect(claim(by: "spare-s").replaces(node: "node-a", peer: "node-b"), "the primary still protecting to the lost backup")
        #expect(!claim(by: "spare-s").replaces(node: "node-a", peer: "spare-s"), "the primary that followed it")
        #expect(!claim(by: "spare-s").replaces(node: "spare-s", peer: "node-a"), "the spare itself")
    }

    @Test func aReplacedBackupIsRefusedTheTakeOverAndLearnsWhy() throws {
        let current = Mutex<SpareClaim?>(nil)
        let fence = ClaimCheckedFence(base: UnwitnessedFence(), node: "node-b", peer: "node-a", claim: { current.withLock { $0 } })
        #expect(try fence.tryAcquire(.takeOver), "no claim: the witness (here none) decides")
        current.withLock { $0 = claim(by: "node-b") }
        #expect(try fence.tryAcquire(.takeOver), "a claim naming this node")
        current.withLock { $0 = claim(by: "spare-s") }
        #expect(try !fence.tryAcquire(.takeOver))
        #expect(fence.holder == "spare-s")
        #expect(fence.supersession?.contains("spare-s") == true, "a node starting from it stops for good (AgentError.fenced)")
        #expect(try fence.tryAcquire(.resume), "a copy running here carries on: the claim is about replicas")
    }

    @Test func aClaimThatCannotBeReadRefusesTheAttemptAndAFollowedSpareIsNoReplacement() throws {
        let fence = ClaimCheckedFence(base: UnwitnessedFence(), node: "node-a", peer: "node-b", claim: { throw Unreachable() })
        #expect(throws: Unreachable.self) { try fence.tryAcquire(.takeOver) }
        let followed = ClaimCheckedFence(base: UnwitnessedFence(), node: "node-a", peer: "node-b", claim: { SpareClaim(
            host: "hv-s", node: "spare-s", listen: "192.0.2.9:7400", lostBackup: "node-b", claimedAt: 0) })
        #expect(try !followed.tryAcquire(.takeOver))
        followed.follow("spare-s")
        #expect(try followed.tryAcquire(.takeOver), "once the node's peer is the claim's spare")
    }

    @Test func theFollowedPeerIsRecordedAndReplacesTheConfiguredOneAtStart() throws {
        try withTemporaryDirectory("fleet-peer") { root in
            let record = FleetPeerRecord(directory: root)
            #expect(try record.load() == nil)
            try record.save(FleetPeerRecord.Peer(name: "spare-s", address: "192.0.2.9:7401"))
            #expect(try record.load() == FleetPeerRecord.Peer(name: "spare-s", address: "192.0.2.9:7401"))
            let text = """
                [node]
                name = "node-a"
                certificates = "/c"
                state_dir = "\(root)"
                [peer]
                name = "node-b"
                address = "192.0.2.2:7400"
                [vm]
                id = "web"
                memory_mib = 64
                kernel = "/k"
                """
            let daemon = try NodeDaemon(document: TOMLDocument(parsing: text + "\n[fleet]\nendpoints = [\"127.0.0.1:2379\"]", source: "a.toml"),
                                        path: "a.toml", mode: .fixed(.primary))
            #expect(daemon.configuration.peerName == "spare-s")
            #expect(daemon.configuration.peerAddress?.description == "192.0.2.9:7401")
            let unfleeted = try NodeDaemon(document: TOMLDocument(parsing: text, source: "a.toml"), path: "a.toml", mode: .fixed(.primary))
            #expect(unfleeted.configuration.peerName == "node-b", "only a node of the fleet follows claims")
            FileManager.default.createFile(atPath: record.path, contents: Data("{".utf8))
            #expect(throws: (any Error).self, "a damaged record stops the start, naming the file") {
                try NodeDaemon(document: TOMLDocument(parsing: text + "\n[fleet]\nendpoints = [\"127.0.0.1:2379\"]", source: "a.toml"),
                               path: "a.toml", mode: .fixed(.primary))
            }
        }
    }
}
