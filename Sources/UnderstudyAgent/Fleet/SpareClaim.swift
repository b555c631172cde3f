/// A spare host's claim to protect a VM whose backup is gone (`/understudy/fleet/claims/<vm>`),
/// written in one etcd transaction by `FleetRegistry.claim` (`SpareClaimStateMachine` decides
/// when). The primary follows it (its new `peer.name` and `peer.address`), and the lost backup,
/// if it comes back, finds it and stands down. It has no lease: it must outlive the spare's
/// process, or a returning lost backup would find no reason to stand down; a later claim
/// replaces it when its spare is gone in turn.
public struct SpareClaim: Sendable, Codable, Equatable {
    /// The spare's fleet host, and its node name (its certificate's name: what the primary then expects).
    public var host: String
    public var node: String
    /// Where the spare's backup node for the VM listens (the primary's new `peer.address`).
    public var listen: String
    /// Where that backup node receives heartbeat datagrams (the primary's new `udp_peer`); nil:
    /// it has no second heartbeat path (no `spare.udp_host`, or the primary published none), and
    /// claims written before it existed.
    public var udp: String?
    /// The backup node this claim replaces.
    public var lostBackup: String
    /// When it was claimed (seconds since 1970; for people, not for decisions: hosts' clocks differ).
    public var claimedAt: Double

    public init(host: String, node: String, listen: String, udp: String? = nil, lostBackup: String, claimedAt: Double) {
        self.host = host
        self.node = node
        self.listen = listen
        self.udp = udp
        self.lostBackup = lostBackup
        self.claimedAt = claimedAt
    }
}

extension SpareClaim {
    /// Whether this claim put its spare in the place of `node`, whose peer is `peer`: it names
    /// neither. Then a backup `node` is stale (a lost backup come back: it stands down and never
    /// activates), and a primary `node` must protect to the spare instead of `peer`. A claim
    /// naming the node itself, or its peer (the pair a claim made, after a switchover), does not.
    public func replaces(node: String, peer: String) -> Bool {
        self.node != node && self.node != peer
    }
}
