import Synchronization
import UnderstudyWitness

/// The fence of a node with `[fleet]`: before this node takes the VM over (activation, forced
/// failover, `understudy primary`), it reads the VM's spare claim, and refuses while a claim
/// replaces it (`SpareClaim.replaces`): a lost backup that came back holds a replica the VM has
/// moved on from, and must never run it. A claim that cannot be read refuses the attempt too
/// (it is tried again): the registry is the only place that says. Everything else is the
/// wrapped fence's (the witness lease).
final class ClaimCheckedFence: ActiveCopyFence {
    let base: ActiveCopyFence
    let node: String
    /// The node's peer now (a primary that followed a claim has a new one, `follow`).
    private let peer: Mutex<String>
    /// The VM's claim; nil: none.
    private let claim: @Sendable () throws -> SpareClaim?
    /// The claim that replaced this node (nil: none seen).
    private let replacedBy = Mutex<SpareClaim?>(nil)

    init(base: ActiveCopyFence, node: String, peer: String, claim: @escaping @Sendable () throws -> SpareClaim?) {
        self.base = base
        self.node = node
        self.peer = Mutex(peer)
        self.claim = claim
    }

    func tryAcquire(_ intent: ClaimIntent) throws -> Bool {
        if intent == .takeOver {
            guard let found = try claim() else { return try base.tryAcquire(intent) }
            if found.replaces(node: node, peer: peer.withLock { $0 }) {
                replacedBy.withLock { $0 = found }
                return false
            }
        }
        return try base.tryAcquire(intent)
    }

    /// The node's peer is `name` from now on.
    func follow(_ name: String) {
        peer.withLock { $0 = name }
    }

    var isValid: Bool { base.isValid }
    var holder: String? { replacedBy.withLock { $0?.node } ?? base.holder }
    var supersession: String? {
        if let claim = replacedBy.withLock({ $0 }) {
            return "the fleet re-protected the VM with \(claim.node) on \(claim.host) (spare claim in place of \(claim.lostBackup)): this node's replica is stale"
        }
        return base.supersession
    }
    var term: WitnessTerm? { base.term }
    func release() { base.release() }
    var kind: String { base.kind }
}
