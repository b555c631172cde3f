import Foundation
import Logging
import UnderstudySystem

/// This node's claim on a VM's witness key, kept alive by a dedicated thread.
///
/// A node may release the VM's output or activate it only while `isValid`. Validity is a matter of
/// time (see `WitnessLeaseStateMachine`): it ends by itself when renewals stop succeeding, even if
/// the keep-alive thread is stuck, and before etcd can expire the lease and let the other node in.
///
/// Each claim also moves the VM's term on (`WitnessTerm`, under `termKey`), and the new term is
/// recorded in `termRecord` before the node may act: a node that held term T can resume later
/// only if nobody claimed the VM since (`ClaimIntent.resume`).
public final class WitnessLease: @unchecked Sendable {
    public let configuration: WitnessConfiguration
    /// The witness key, `/understudy/<vm>/active`.
    public let key: String
    /// The term key, `/understudy/<vm>/term`.
    public let termKey: String
    /// Where this node's term is kept across restarts; nil: in memory only.
    public let termRecord: WitnessTermRecord?
    /// This node's name: the value stored under the key while it holds it.
    public let node: String
    private let client: EtcdClient
    private let logger: Logger
    private let onLost: @Sendable (String) -> Void
    private let core: Core
    /// Serialises acquire, tryAcquire and release; `keeper` is only touched under it.
    private let operations = NSLock()
    private var keeper: JoinableThread?

    /// What the caller's thread and the keep-alive thread share, under `condition`'s lock.
    private final class Core: @unchecked Sendable {
        let condition = NSCondition()
        var machine: WitnessLeaseStateMachine
        var holder: String?
        /// Tells the keep-alive thread to return (and cuts its sleep short).
        var stopping = false

        init(machine: WitnessLeaseStateMachine) { self.machine = machine }

        func withLock<T>(_ body: (Core) -> T) -> T {
            condition.lock()
            defer { condition.unlock() }
            return body(self)
        }

        /// Sleeps until `deadline` or until `stopping` is set.
        func sleep(until deadline: ContinuousClock.Instant) {
            condition.lock()
            defer { condition.unlock() }
            while !stopping {
                let left = deadline - .now
                guard left > .zero, condition.wait(until: Date(timeIntervalSinceNow: left.seconds)) else { return }
            }
        }
    }

    /// - Parameters:
    ///   - vm: the VM's id, which names the key.
    ///   - node: this node's name, stored under the key while it holds it.
    ///   - termRecord: where the term this node claims is recorded (synced) before it acts, and
    ///     read from now; nil: in memory only, a restarted node then never held a term.
    ///   - onLost: called once, from the keep-alive thread, when a held lease can no longer be
    ///     trusted; the reason says why. `isValid` is already false by then.
    /// - Throws: `.record` when the term record cannot be read.
    public init(configuration: WitnessConfiguration, vm: String, node: String, termRecord: WitnessTermRecord? = nil, logger: Logger,
                onLost: @escaping @Sendable (String) -> Void) throws(WitnessError) {
        self.configuration = configuration
        key = WitnessConfiguration.key(forVM: vm)
        termKey = WitnessConfiguration.termKey(forVM: vm)
        self.termRecord = termRecord
        let term = try termRecord?.load()
        self.node = node
        client = EtcdClient(endpoints: configuration.endpoints, timeout: configuration.requestTimeout, tls: configuration.tls)
        self.logger = logger
        self.onLost = onLost
        core = Core(machine: WitnessLeaseStateMachine(configuration: .init(requestedTTL: configuration.leaseTTL), node: node, term: term))
    }

    /// Stops renewing without touching etcd: an abandoned claim ends when its lease expires.
    deinit {
        stopKeeper()
    }

    /// Blocks until this node holds the key (lease granted, key and term claimed, term recorded)
    /// or `timeout` passes. While another node holds it, the claim is retried (every quarter
    /// TTL, at least 100 ms) in case that node's lease ends. Returns at once when the key is held already.
    ///
    /// Throws `.heldBy(holder)` when another node still held the key at the end, `.superseded`
    /// when a resume found a newer term, otherwise the last failure (`.unreachable` when no etcd
    /// endpoint answered).
    public func acquire(_ intent: ClaimIntent, timeout: Duration) throws(WitnessError) {
        _ = try attempt(intent, until: .now + timeout, retrying: true)
    }

    /// One attempt, without waiting: true when this node holds the key now (or already did),
    /// false when another node holds it (see `holder`) or a resume was superseded (see
    /// `supersession`). A lease granted by an earlier refused attempt is reused while it lasts.
    public func tryAcquire(_ intent: ClaimIntent) throws(WitnessError) -> Bool {
        try attempt(intent, until: .now, retrying: false)
    }

    /// The term this node claimed last (held now if `isValid`), or recorded when it last ran.
    public var term: WitnessTerm? {
        core.withLock { $0.machine.term }
    }

    /// Why this node may never resume, once a resume found a newer term; nil otherwise.
    public var supersession: String? {
        core.withLock { $0.machine.supersession }
    }

    /// True while this node holds the key and its lease surely has not expired at etcd. Cheap
    /// (a lock and a clock read): meant to be checked before every release of output.
    public var isValid: Bool {
        core.withLock { $0.machine.mayAct(.now) }
    }

    /// The node that holds the key as last seen: another node after a refused claim, this node
    /// after a successful one; nil before any claim.
    public var holder: String? {
        core.withLock { $0.holder }
    }

    /// Gives the key up (a planned switchover, an orderly stop): `isValid` turns false first,
    /// then the keep-alive thread stops, the claim is deleted (only if it still names this node)
    /// and the lease revoked, so the other node can acquire at once. Failures are logged: the
    /// lease then expires on its own. Waits for an `acquire` in progress.
    public func release() {
        operations.lock()
        defer { operations.unlock() }
        let lease = core.withLock { core in
            core.holder = core.holder == node ? nil : core.holder
            return core.machine.release()
        }
        stopKeeper()
        do {
            try client.release(key, ifValue: node)
            if let lease { try client.revoke(lease: lease) }
            logger.info("witness: \(node) released \(key)\(lease.map { " and revoked lease \(Self.hex($0))" } ?? "")")
        } catch {
            logger.warning("witness: releasing \(key) failed, the claim ends when its lease expires: \(error)")
        }
    }

    // MARK: - Acquiring

    private func attempt(_ intent: ClaimIntent, until deadline: ContinuousClock.Instant, retrying: Bool) throws(WitnessError) -> Bool {
        operations.lock()
        defer { operations.unlock() }
        if isValid { return true }
        // A held lease that ran out while the keep-alive thread was stuck in a request: report it
        // here. The machine yields `.lost` once, so the thread cannot report it a second time.
        let unreported = core.withLock { core -> String? in
            guard case .held = core.machine.state, case .lost(let reason) = core.machine.poll(.now) else { return nil }
            return reason
        }
        if let unreported { Self.report(lost: unreported, logger: logger, onLost: onLost) }
        stopKeeper()
        var lastError: WitnessError?
        var action = core.withLock { $0.machine.start(at: .now, intent: intent) }
        while true {
            switch action {
            case .sendGrant(let ttl):
                let sent = ContinuousClock.now
                do {
                    let granted = try client.grantLease(ttl: ttl)
                    logger.debug("witness: granted lease \(Self.hex(granted.id)) for \(granted.ttl) (asked \(ttl))")
                    action = core.withLock { $0.machine.granted(id: granted.id, ttl: granted.ttl, sentAt: sent) }
                } catch {
                    lastError = error
                    action = core.withLock { $0.machine.requestFailed(error.description, at: .now) }
                }
            case .sendClaim(let lease, let expected, let next):
                do {
                    switch try client.claim(key, value: node, lease: lease, termKey: termKey, expecting: expected, next: next) {
                    case .acquired:
                        action = core.withLock { core in
                            core.holder = node
                            return core.machine.claimed(at: .now)
                        }
                    case .heldBy(let holder):
                        lastError = .heldBy(holder)
                        action = core.withLock { core in
                            core.holder = holder
                            return core.machine.claimRefused(holder: holder, at: .now)
                        }
                    case .termIs(let current):
                        logger.info("witness: \(termKey) holds \(current?.description ?? "nothing"), not \(expected?.description ?? "nothing")")
                        action = core.withLock { core in
                            if let current, intent == .resume { core.holder = current.holder }
                            return core.machine.termMismatch(current: current, at: .now)
                        }
                    }
                } catch {
                    lastError = error
                    action = core.withLock { $0.machine.requestFailed(error.description, at: .now) }
                }
            case .recordTerm(let term):
                do {
                    // Synced before this node acts: after a crash it must know it held this term.
                    try termRecord?.store(term)
                    logger.notice("witness: \(node) claimed \(key) in \(term)")
                    action = core.withLock { $0.machine.termRecorded(at: .now) }
                } catch {
                    lastError = error
                    logger.error("witness: cannot record \(term) before acting: \(error)")
                    action = core.withLock { $0.machine.requestFailed(error.description, at: .now) }
                }
            case .superseded(let reason):
                logger.critical("witness: \(reason)")
                guard retrying else { return false }
                throw .superseded(reason)
            case .sendKeepAlive(let lease):
                let renewal = Self.renew(lease, client: client, core: core, logger: logger)
                action = renewal.next
                lastError = renewal.error ?? lastError
            case .wait(let until):
                // Held and waiting for the next renewal: the keep-alive thread takes it from here.
                if let lease = core.withLock({ $0.machine.mayAct(.now) ? $0.machine.lease : nil }) {
                    startKeeper()
                    logger.info("witness: \(node) holds \(key) with lease \(lease.hexID) (TTL \(lease.ttl))")
                    return true
                }
                guard retrying, until <= deadline else {
                    if case .heldBy = lastError, !retrying { return false }
                    throw lastError ?? .unreachable("etcd did not answer in time")
                }
                core.sleep(until: until)
                action = core.withLock { $0.machine.poll(.now) }
            case .lost, .none:
                // The claim went through only after the new lease had run out: nothing was held.
                guard ContinuousClock.now < deadline else { throw lastError ?? .unreachable("etcd answered too slowly to hold a lease") }
                action = core.withLock { $0.machine.start(at: .now, intent: intent) }
            }
        }
    }

    // MARK: - Keeping the lease alive

    /// Starts the keep-alive thread. Called under `operations` with the key just claimed.
    private func startKeeper() {
        // The thread holds what it needs, not `self`: an abandoned WitnessLease can still deinit.
        let core = core
        let client = client
        let onLost = onLost
        let logger = logger
        keeper = JoinableThread(name: "witness-keepalive") {
            var action = core.withLock { $0.machine.poll(.now) }
            while !core.withLock({ $0.stopping }) {
                switch action {
                case .sendKeepAlive(let lease):
                    action = WitnessLease.renew(lease, client: client, core: core, logger: logger).next
                case .wait(let until):
                    core.sleep(until: until)
                    action = core.withLock { $0.machine.poll(.now) }
                case .lost(let reason):
                    WitnessLease.report(lost: reason, logger: logger, onLost: onLost)
                    return
                case .none, .sendGrant, .sendClaim, .recordTerm, .superseded:
                    // Released (or never held): a held lease only renews, waits, or is lost.
                    return
                }
            }
        }
    }

    /// Stops and joins the keep-alive thread, if one runs.
    private func stopKeeper() {
        core.withLock { core in
            core.stopping = true
            core.condition.broadcast()
        }
        keeper?.join()
        keeper = nil
        // Re-armed for the next keeper, and so that `acquire` really sleeps between attempts.
        core.withLock { $0.stopping = false }
    }

    /// One keep-alive, reported to the state machine: its next action, and the failure if any.
    private static func renew(_ lease: Int64, client: EtcdClient, core: Core, logger: Logger)
        -> (next: WitnessLeaseStateMachine.Action, error: WitnessError?) {
        let sent = ContinuousClock.now
        do {
            let remaining = try client.keepAlive(lease: lease)
            let next = core.withLock { core in
                if core.machine.lease?.lastFailure != nil && remaining > .zero {
                    logger.info("witness: lease \(hex(lease)) renewed again")
                }
                return core.machine.renewed(remaining: remaining, sentAt: sent)
            }
            return (next, nil)
        } catch {
            let next = core.withLock { core in
                if core.machine.lease?.lastFailure == nil {
                    logger.warning("witness: keep-alive of lease \(hex(lease)) failed, retrying: \(error)")
                }
                return core.machine.requestFailed(error.description, at: .now)
            }
            return (next, error)
        }
    }

    private static func report(lost reason: String, logger: Logger, onLost: @Sendable (String) -> Void) {
        logger.error("witness: \(reason); this node must not act until it acquires again")
        onLost(reason)
    }

    private static func hex(_ lease: Int64) -> String { "0x" + String(UInt64(bitPattern: lease), radix: 16) }
}
