import Foundation
import Logging
import Synchronization
import UnderstudySystem
import UnderstudyWitness

/// Keeps this node's entries in the fleet registry (`FleetRegistry`): a thread of its own
/// follows the `FleetPublisherStateMachine`, asks `records` for the node's entries, writes them
/// with the host's capacity on a lease it keeps alive, and revokes the lease when stopped.
///
/// Nothing on the replication path waits for it: it runs at normal priority on its own thread
/// (the pause path runs under SCHED_FIFO), and reads the node's status the way `understudy
/// status` does. When etcd cannot be reached it logs once, retries every period, and the node
/// carries on; its entries vanish when the lease runs out and come back with the next grant.
public final class FleetPublisher: Sendable {
    public let configuration: FleetConfiguration
    private let stopping = Latch()
    /// Set before `stopping` when the entries are to stay until the lease runs out.
    private let keepEntries = Latch()
    private let thread = Mutex<JoinableThread?>(nil)

    /// Starts publishing.
    /// - Parameter records: this node's entries now (its VM's); called on the publisher's thread
    ///   a few times per period. `publishedAt` is set when they are written.
    /// - Parameter descriptions: the descriptions of the VMs this node runs as primary, for
    ///   spare hosts; written with the entries.
    public init(configuration: FleetConfiguration, logger: Logger, records: @escaping @Sendable () -> [FleetRecord],
                descriptions: @escaping @Sendable () -> [VMDescriptionRecord] = { [] }) {
        self.configuration = configuration
        let client = EtcdClient(endpoints: configuration.endpoints, timeout: configuration.requestTimeout, tls: configuration.tls)
        let stopping = stopping
        let keepEntries = keepEntries
        thread.withLock {
            $0 = JoinableThread(name: "fleet-publish") {
                Self.run(configuration: configuration, client: client, records: records, descriptions: descriptions, stopping: stopping, keepEntries: keepEntries, logger: logger)
            }
        }
    }

    deinit { stop() }

    /// Stops publishing and waits for the thread. With `revokingLease` (an orderly stop) the
    /// entries are deleted at once; without, they stay until the lease runs out, as after a crash.
    public func stop(revokingLease: Bool = true) {
        if !revokingLease { keepEntries.trigger() }
        stopping.trigger()
        thread.withLock { $0.take() }?.join()
    }

    private static func run(configuration: FleetConfiguration, client: EtcdClient, records: @Sendable () -> [FleetRecord],
                            descriptions: @Sendable () -> [VMDescriptionRecord],
                            stopping: Latch, keepEntries: Latch, logger: Logger) {
        let registry = FleetRegistry(client: client)
        var machine = FleetPublisherStateMachine(period: configuration.publishPeriod)
        var written: [FleetRecord]?
        let metadata: Logger.Metadata = ["host": "\(configuration.host)", "endpoints": "\(configuration.endpoints.map(\.description).joined(separator: ","))"]
        func failed(_ error: WitnessError, _ what: String) {
            if machine.failed("\(error)", at: .now) {
                logger.warning("fleet registry: \(what) failed, retrying every \(configuration.publishPeriod); the node is unaffected",
                               metadata: metadata.merging(["error": "\(error)"]) { $1 })
            }
        }
        func succeeded(_ ended: String?) {
            if ended != nil { logger.notice("fleet registry reachable again", metadata: metadata) }
        }
        while !stopping.isSet {
            let now = ContinuousClock.now
            let current = records()
            switch machine.next(at: now, changed: written.map { $0.map(\.significant) } != current.map(\.significant)) {
            case .grant:
                do {
                    let lease = try client.grantLease(ttl: configuration.leaseTTL)
                    succeeded(machine.granted(id: lease.id, ttl: lease.ttl, sentAt: now))
                    logger.debug("fleet registry: granted lease \(lease.id) for \(lease.ttl)", metadata: metadata)
                } catch {
                    failed(error, "granting a lease")
                }
            case .renew(let lease):
                do {
                    let remaining = try client.keepAlive(lease: lease)
                    if remaining == .zero { logger.info("fleet registry: lease \(lease) ran out at etcd; publishing on a new one", metadata: metadata) }
                    succeeded(machine.renewed(remaining: remaining, sentAt: now))
                } catch {
                    failed(error, "renewing the lease")
                }
            case .publish(let lease):
                do {
                    let wall = Date().timeIntervalSince1970
                    let stamped = current.map { record in
                        var record = record
                        record.publishedAt = wall
                        return record
                    }
                    // This host's count includes its own entries as they are now, not as last written.
                    let others = try registry.records().filter { other in !stamped.contains { $0.vm == other.vm && $0.host == other.host } }
                    let host = HostCapacity(host: configuration.host, resources: HostResources.measure(replicaDirectory: configuration.replicaDirectory),
                                            slotMemoryBytes: configuration.slotMemoryBytes, maxPrimaries: configuration.maxPrimaries,
                                            maxBackups: configuration.maxBackups, records: others + stamped, publishedAt: wall)
                    let described = descriptions().map { description in
                        var description = description
                        description.publishedAt = wall
                        return description
                    }
                    try registry.publish(stamped, host: host, descriptions: described, lease: lease)
                    written = current
                    succeeded(machine.published(at: .now))
                } catch {
                    failed(error, "publishing")
                }
            case .wait(let until):
                _ = stopping.wait(timeout: until - now)
            }
        }
        guard !keepEntries.isSet, let lease = machine.stop(at: .now) else { return }
        do {
            try client.revoke(lease: lease)
        } catch {
            logger.info("fleet registry: revoking lease \(lease) failed, the entries vanish when it runs out", metadata: metadata.merging(["error": "\(error)"]) { $1 })
        }
    }
}
