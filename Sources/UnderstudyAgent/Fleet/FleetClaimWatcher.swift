import Logging
import Synchronization
import UnderstudySystem
import UnderstudyWitness

/// Follows the VM's spare claim for the node running it (`[fleet]`): a thread of its own reads
/// `/understudy/fleet/claims/<vm>` every publication period and, when a claim replaces the
/// node's backup (`SpareClaim.replaces`) while `running` says the VM runs here, makes the
/// claim's spare the node's peer and hands it to `follow` (which points the VM's protection at
/// it and records it). Nothing on the replication path waits for it; when etcd cannot be
/// reached the node keeps its peer.
public final class FleetClaimWatcher: Sendable {
    private let peerNow: Mutex<FleetPeerRecord.Peer>
    private let stopping = Latch()
    private let thread = Mutex<JoinableThread?>(nil)

    /// - Parameters:
    ///   - peer: the node's peer at start (the configuration's, or the recorded one).
    ///   - running: whether the VM runs on this node now (only then is a claim followed).
    ///   - follow: called on the watcher's thread with the spare to protect to.
    public init(configuration: FleetConfiguration, vm: String, node: String, peer: FleetPeerRecord.Peer, logger: Logger,
                running: @escaping @Sendable () -> Bool, follow: @escaping @Sendable (FleetPeerRecord.Peer, SpareClaim) -> Void) {
        peerNow = Mutex(peer)
        let registry = FleetRegistry(endpoints: configuration.endpoints, tls: configuration.tls, timeout: configuration.requestTimeout)
        let stopping = stopping
        thread.withLock {
            $0 = JoinableThread(name: "fleet-claims") { [self] in
                var failing = false
                repeat {
                    guard running() else { continue }
                    do {
                        let claim = try registry.claim(on: vm)
                        if failing { logger.notice("fleet registry reachable again: following the VM's spare claim") }
                        failing = false
                        guard let claim, claim.replaces(node: node, peer: self.peer.name) else { continue }
                        let next = FleetPeerRecord.Peer(name: claim.node, address: claim.listen)
                        peerNow.withLock { $0 = next }
                        follow(next, claim)
                    } catch {
                        if !failing { logger.warning("fleet registry: cannot read the VM's spare claim; keeping the peer", metadata: ["error": "\(error)"]) }
                        failing = true
                    }
                } while !stopping.wait(timeout: configuration.publishPeriod)
            }
        }
    }

    /// The node's peer now.
    public var peer: FleetPeerRecord.Peer { peerNow.withLock { $0 } }

    /// Stops the thread and waits for it (the thread keeps the watcher until then).
    public func stop() {
        stopping.trigger()
        thread.withLock { $0.take() }?.join()
    }
}
