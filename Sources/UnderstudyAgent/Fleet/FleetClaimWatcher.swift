import Logging
import Synchronization
import UnderstudySystem
import UnderstudyWitness

/// Follows the VM's spare claim for a node with `[fleet]`: a thread of its own reads
/// `/understudy/fleet/claims/<vm>` every publication period while the node runs the VM or keeps
/// its replica, and carries out what `FleetClaimStateMachine` decides. When a claim replaces the
/// node's backup while the VM runs here, it makes the claim's spare the node's peer and hands it
/// to `follow` (which points the VM's protection at it and records it). When a claim replaces
/// the node itself while it is a backup with no primary connected, it hands the claim to
/// `standDown` and stops reading. Nothing on the replication path waits for it; when etcd
/// cannot be reached nothing changes.
public final class FleetClaimWatcher: Sendable {
    private let peerNow: Mutex<FleetPeerRecord.Peer>
    private let stopping = Latch()
    private let thread = Mutex<JoinableThread?>(nil)

    /// - Parameters:
    ///   - peer: the node's peer at start (the configuration's, or the recorded one).
    ///   - side: what the node is now (only a node running the VM or keeping its replica reads the claim).
    ///   - follow: called on the watcher's thread with the spare to protect to.
    ///   - standDown: called on the watcher's thread, once, with the claim that replaced this backup.
    public init(configuration: FleetConfiguration, vm: String, node: String, peer: FleetPeerRecord.Peer, logger: Logger,
                side: @escaping @Sendable () -> FleetClaimStateMachine.Side,
                follow: @escaping @Sendable (FleetPeerRecord.Peer, SpareClaim) -> Void,
                standDown: @escaping @Sendable (SpareClaim) -> Void) {
        peerNow = Mutex(peer)
        let registry = FleetRegistry(endpoints: configuration.endpoints, tls: configuration.tls, timeout: configuration.requestTimeout)
        let stopping = stopping
        thread.withLock {
            $0 = JoinableThread(name: "fleet-claims") { [self] in
                var machine = FleetClaimStateMachine(node: node, peer: peer)
                repeat {
                    let now = side()
                    guard now != .neither else { continue }
                    let reading: FleetClaimStateMachine.Reading
                    do {
                        reading = .claim(try registry.claim(on: vm))
                    } catch {
                        reading = .unreadable("\(error)")
                    }
                    for action in machine.observe(reading, as: now) {
                        switch action {
                        case .follow(let next, let claim):
                            self.peerNow.withLock { $0 = next }
                            follow(next, claim)
                        case .standDown(let claim):
                            standDown(claim)
                            return
                        case .ignoreMalformed(let claim, let why):
                            logger.error("the VM's spare claim names an address that does not parse: keeping the peer",
                                         metadata: ["spare": "\(claim.node)", "spare-host": "\(claim.host)", "error": "\(why)"])
                        case .awaitSessionEnd(let claim):
                            logger.warning("a spare host protects the VM in place of this backup: standing down once the primary's session ends",
                                           metadata: ["spare": "\(claim.node)", "spare-host": "\(claim.host)"])
                        case .warnUnreachable(let why):
                            logger.warning("fleet registry: cannot read the VM's spare claim; nothing changes until it can be read",
                                           metadata: ["error": "\(why)"])
                        case .noteReachable:
                            logger.notice("fleet registry reachable again: following the VM's spare claim")
                        }
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
