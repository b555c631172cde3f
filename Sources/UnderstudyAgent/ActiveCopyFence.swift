import Logging
import UnderstudyTransport
import UnderstudyWitness
/// Who may be the active copy of the VM: the node that releases its output and serves.
///
/// With a witness, that is the holder of the witness lease; a node releases output of
/// unacknowledged checkpoints, or activates, only while `isValid`. Without one (a two-node pair
/// whose operator accepted the risk) every node may: a partition can then leave two copies
/// active, which is why that mode must be chosen explicitly (`failover.without_witness`).
public protocol ActiveCopyFence: AnyObject, Sendable {
    /// One attempt to become, or stay, the active copy: true when this node holds the right now.
    /// `intent`: carry on with the copy this node runs (`resume`), or start one from a replica
    /// or on the operator's word (`takeOver`).
    func tryAcquire(_ intent: ClaimIntent) throws -> Bool
    /// True while this node surely holds the right. Cheap: checked before output leaves.
    var isValid: Bool { get }
    /// The other holder, when an attempt was refused.
    var holder: String? { get }
    /// Why this node's copy may never resume (another copy became active after it); nil: it may.
    var supersession: String? { get }
    /// The witness term this node claimed last (nil: none, or no witness).
    var term: WitnessTerm? { get }
    /// Gives the right up (a switchover hands it to the peer; an orderly stop).
    func release()
    /// For logs and status.
    var kind: String { get }
}

/// The fence a node's configuration asks for: the witness lease, or the unwitnessed pair.
/// - Parameter onLost: called once when a held witness lease can no longer be trusted.
/// - Throws: `WitnessError.record` when the node's term record (`<state_dir>/witness-term`) is unreadable.
public func makeFence(_ configuration: AgentConfiguration, logger: Logger,
                      onLost: @escaping @Sendable (String) -> Void) throws -> ActiveCopyFence {
    guard !configuration.witnessEndpoints.isEmpty else { return UnwitnessedFence() }
    let tls = TLSConfiguration(directory: configuration.certificates, node: configuration.nodeName, peer: configuration.witnessServerName)
    return try WitnessLease(configuration: WitnessConfiguration(endpoints: configuration.witnessEndpoints, tls: tls,
                                                                leaseTTL: configuration.witnessLeaseTTL),
                            vm: configuration.vm.id, node: configuration.nodeName,
                            termRecord: WitnessTermRecord(directory: configuration.stateDirectory), logger: logger, onLost: onLost)
}
