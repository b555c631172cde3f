import UnderstudySystem
import UnderstudyTransport

/// The second heartbeat path a node running the VM uses with its peer now. Pure.
///
/// With the configuration's peer it is `heartbeat.udp_listen` / `udp_peer` as configured. Once a
/// spare took the lost backup's place (`FleetPeerRecord.Peer`), the configured `udp_peer` is the
/// lost backup's: the datagrams go to the spare's endpoint (from its claim) instead, from the
/// same `udp_listen`. When only one of the two has a second path, the pair runs on the
/// replication link only, and `reason` says why (the operator configured two paths).
public struct HeartbeatDatagramTarget: Sendable, Equatable {
    public var listen: Endpoint
    public var peer: Endpoint
    /// Whose datagrams count (`HeartbeatDatagramVerifier`).
    public var peerName: String

    public enum Choice: Sendable, Equatable {
        case path(HeartbeatDatagramTarget)
        /// No datagrams; `reason` when a second path was configured on one side (nil: on neither).
        case none(reason: String?)
    }

    /// - Parameters:
    ///   - configured: `heartbeat.udp_listen` and `udp_peer` of the configuration.
    ///   - configuredPeer: `peer.name`.
    ///   - followed: the spare followed instead of the configured peer; nil: none.
    public static func choose(configured: (listen: Endpoint, peer: Endpoint)?, configuredPeer: String,
                              followed: FleetPeerRecord.Peer?) -> Choice {
        guard let followed else {
            return configured.map { .path(HeartbeatDatagramTarget(listen: $0.listen, peer: $0.peer, peerName: configuredPeer)) } ?? .none(reason: nil)
        }
        switch (configured, followed.udp) {
        case (nil, nil):
            return .none(reason: nil)
        case (nil, let udp?):
            return .none(reason: "the spare \(followed.name) listens for heartbeat datagrams at \(udp) but this node has no heartbeat.udp_listen: "
                         + "heartbeats with it travel on the replication connection only")
        case (_?, nil):
            return .none(reason: "the spare \(followed.name) has no second heartbeat path (its spare.udp_host is not set): "
                         + "heartbeats with it travel on the replication connection only")
        case (let path?, let udp?):
            do {
                return .path(HeartbeatDatagramTarget(listen: path.listen, peer: try Endpoint(parsing: udp), peerName: followed.name))
            } catch {
                return .none(reason: "the spare \(followed.name)'s heartbeat datagram address \(udp.debugDescription) is not an address (\(error)): "
                             + "heartbeats with it travel on the replication connection only")
            }
        }
    }
}
