import Testing
import UnderstudySystem
@testable import UnderstudyAgent

/// Where a node running the VM sends heartbeat datagrams: to the configured peer, or to the
/// spare it follows when both have a second path, else nowhere, and it says why.
@Suite("Heartbeat datagram target")
struct HeartbeatDatagramTargetTests {
    private let configured = (listen: Endpoint(host: "198.51.100.1", port: 7500), peer: Endpoint(host: "198.51.100.2", port: 7500))

    private func spare(udp: String?) -> FleetPeerRecord.Peer {
        FleetPeerRecord.Peer(name: "spare-s", address: "192.0.2.9:7402", udp: udp)
    }

    @Test func theConfiguredPeerGetsTheConfiguredPath() {
        #expect(HeartbeatDatagramTarget.choose(configured: configured, configuredPeer: "node-b", followed: nil)
                == .path(HeartbeatDatagramTarget(listen: configured.listen, peer: configured.peer, peerName: "node-b")))
        #expect(HeartbeatDatagramTarget.choose(configured: nil, configuredPeer: "node-b", followed: nil) == .none(reason: nil))
    }

    @Test func aFollowedSpareWithASecondPathGetsTheDatagramsNotTheLostBackup() {
        #expect(HeartbeatDatagramTarget.choose(configured: configured, configuredPeer: "node-b", followed: spare(udp: "198.51.100.9:7402"))
                == .path(HeartbeatDatagramTarget(listen: configured.listen, peer: Endpoint(host: "198.51.100.9", port: 7402), peerName: "spare-s")))
    }

    @Test func whenOnlyOneEndHasASecondPathThePairRunsOnTheReplicationLinkAndSaysWhy() {
        guard case .none(let noSpareUDP?) = HeartbeatDatagramTarget.choose(configured: configured, configuredPeer: "node-b", followed: spare(udp: nil)) else {
            Issue.record("a spare without spare.udp_host got a datagram path")
            return
        }
        #expect(noSpareUDP.contains("spare.udp_host"))
        guard case .none(let noOwnUDP?) = HeartbeatDatagramTarget.choose(configured: nil, configuredPeer: "node-b", followed: spare(udp: "198.51.100.9:7402")) else {
            Issue.record("a node without heartbeat.udp_listen got a datagram path")
            return
        }
        #expect(noOwnUDP.contains("heartbeat.udp_listen"))
        guard case .none(let unreadable?) = HeartbeatDatagramTarget.choose(configured: configured, configuredPeer: "node-b", followed: spare(udp: "nowhere")) else {
            Issue.record("an address without a port was used")
            return
        }
        #expect(unreadable.contains("nowhere"))
        #expect(HeartbeatDatagramTarget.choose(configured: nil, configuredPeer: "node-b", followed: spare(udp: nil)) == .none(reason: nil),
                "neither end configured one: nothing to say")
    }
}
