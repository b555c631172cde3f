import UnderstudyWitness

/// The witness lease is the fence of a pair with a witness.
extension WitnessLease: ActiveCopyFence {
    public var kind: String {
        let endpoints = configuration.endpoints.map(\.description).joined(separator: ", ")
        let state = if isValid { "held by this node" } else if supersession != nil { "superseded" }
            else if let holder, holder != node { "held by \(holder)" } else { "not held by this node" }
        return "witness \(endpoints) (\(key): \(state)\(term.map { ", this node's last \($0)" } ?? ""))"
    }
}
