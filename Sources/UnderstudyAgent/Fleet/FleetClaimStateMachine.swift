import UnderstudySystem

/// What a node with `[fleet]` does about its VM's spare claim, decided from each reading of the
/// claim (`FleetClaimWatcher` reads it every publication period; `NodeDaemon` once at start).
/// Pure: the readings and the node's side come in, actions go out.
///
/// A claim that replaces the node (`SpareClaim.replaces`) means:
/// - on the node running the VM: protect to the claim's spare from now on (`follow`), once;
/// - on a backup: its replica is a past the VM has moved on from; it stands down, but only once
///   no primary session is connected (a primary still sending to it has not yet followed the
///   claim, and will on its next reading).
///
/// A claim whose addresses do not parse is not followed (said once per claim): anyone with a
/// certificate of the fleet's CA can write one, and following it would leave the VM without a
/// reachable backup.
///
/// A registry out of reach changes nothing: the node keeps its peer, and a backup keeps serving
/// (its fence refuses an activation while the claim cannot be read, `ClaimCheckedFence`).
public struct FleetClaimStateMachine: Sendable {
    /// What the node is when the claim is read.
    public enum Side: Sendable, Equatable {
        /// The VM runs here.
        case primary
        /// The node keeps a replica; `sessionConnected`: a primary is sending to it now.
        case backup(sessionConnected: Bool)
        /// Between roles (starting, stopping): nothing to decide.
        case neither
    }

    /// One reading of `/understudy/fleet/claims/<vm>`.
    public enum Reading: Sendable, Equatable {
        /// The claim; nil: the VM has none.
        case claim(SpareClaim?)
        /// The registry could not be read (why).
        case unreadable(String)
    }

    public enum Action: Sendable, Equatable {
        /// Protect the VM to this spare from now on (the node's peer is it now).
        case follow(FleetPeerRecord.Peer, SpareClaim)
        /// Stop serving as the backup, remove the replica, report `stood-down`.
        case standDown(SpareClaim)
        /// The claim replaces this backup but a primary is still connected: stand down once it is
        /// gone (said once per claim).
        case awaitSessionEnd(SpareClaim)
        /// The claim replaces this node's backup but names an address that does not parse (why):
        /// the node keeps its peer (said once per claim).
        case ignoreMalformed(SpareClaim, String)
        /// The registry became unreachable (said once per outage), and reachable again.
        case warnUnreachable(String)
        case noteReachable
    }

    public let node: String
    /// The node's peer now: the configuration's, the recorded one, or the spare followed last.
    public private(set) var peer: FleetPeerRecord.Peer
    private var unreachable = false
    /// The claim an `awaitSessionEnd` was said for.
    private var awaiting: SpareClaim?
    /// The claim an `ignoreMalformed` was said for.
    private var malformed: SpareClaim?

    public init(node: String, peer: FleetPeerRecord.Peer) {
        self.node = node
        self.peer = peer
    }

    public mutating func observe(_ reading: Reading, as side: Side) -> [Action] {
        var actions: [Action] = []
        let found: SpareClaim?
        switch reading {
        case .unreadable(let why):
            if !unreachable { actions.append(.warnUnreachable(why)) }
            unreachable = true
            return actions
        case .claim(let claim):
            if unreachable { actions.append(.noteReachable) }
            unreachable = false
            found = claim
        }
        guard let claim = found, claim.replaces(node: node, peer: peer.name) else {
            awaiting = nil
            return actions
        }
        switch side {
        case .primary:
            if let why = Self.malformedAddress(in: claim) {
                if malformed != claim { actions.append(.ignoreMalformed(claim, why)) }
                malformed = claim
                return actions
            }
            peer = FleetPeerRecord.Peer(name: claim.node, address: claim.listen, udp: claim.udp)
            actions.append(.follow(peer, claim))
        case .backup(sessionConnected: true):
            if awaiting != claim { actions.append(.awaitSessionEnd(claim)) }
            awaiting = claim
        case .backup(sessionConnected: false):
            actions.append(.standDown(claim))
        case .neither:
            break
        }
        return actions
    }

    /// Why the claim's listening or datagram address is not a host:port; nil: both are.
    private static func malformedAddress(in claim: SpareClaim) -> String? {
        for address in [claim.listen] + (claim.udp.map { [$0] } ?? []) {
            do {
                _ = try Endpoint(parsing: address)
            } catch {
                return "\(error)"
            }
        }
        return nil
    }
}
