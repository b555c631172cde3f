import UnderstudySystem

/// The witness lease as a value with no I/O: when to grant, claim and renew, and whether this node
/// may act. The caller performs the requests and passes the instants, so the timing rules are
/// tested without sockets or sleeps.
///
/// The rule that carries safety: etcd starts a lease's countdown when it handles a grant or
/// keep-alive, which is after the request was sent. Counting validity from the send instant,
/// minus a margin for clock-rate differences and scheduling, means this node stops acting before
/// etcd can expire the lease and let another node claim the key, however slow the reply was.
///
/// The rule that keeps a stale copy from coming back: every claim also moves the VM's term on
/// (`WitnessTerm`), in the same etcd transaction, and this node may act only once it recorded the
/// new term durably (`recordTerm`). A `resume` claim expects the term this node last held; finding
/// any other one (someone claimed the VM since) ends in `superseded`, for good: terms only grow.
public struct WitnessLeaseStateMachine: Sendable {
    public typealias Instant = ContinuousClock.Instant

    public struct Configuration: Sendable, Equatable {
        /// The TTL asked of etcd (it may grant more).
        public var requestedTTL: Duration
        /// Taken off the end of the lease's life; nil: max(100 ms, 10 % of the granted TTL).
        public var safetyMargin: Duration?
        /// The wait after a failed request before the next attempt.
        public var retryInterval: Duration

        public init(requestedTTL: Duration = .seconds(2), safetyMargin: Duration? = nil, retryInterval: Duration = .milliseconds(100)) {
            precondition(requestedTTL > .zero && retryInterval > .zero)
            self.requestedTTL = requestedTTL
            self.safetyMargin = safetyMargin
            self.retryInterval = retryInterval
        }

        /// The margin for a lease of `ttl`. A margin of `ttl` or more leaves the lease never valid.
        public func margin(forTTL ttl: Duration) -> Duration { safetyMargin ?? max(.milliseconds(100), ttl / 10) }

        /// How often a claim refused because another node holds the key is tried again: its
        /// holder's lease can end at any moment, and a takeover should not wait long for it.
        public func pollInterval(forTTL ttl: Duration) -> Duration { max(.milliseconds(100), ttl / 4) }
    }

    /// A lease granted to this node.
    public struct Lease: Sendable, Equatable {
        public var id: Int64
        /// The TTL etcd granted or last renewed to.
        public var ttl: Duration
        /// When the last successful grant or keep-alive request was sent.
        public var renewedAt: Instant
        /// This node may act until here: `renewedAt + ttl - margin`.
        public var validUntil: Instant
        /// When the next keep-alive is due: a third of the TTL after `renewedAt` (two more
        /// attempts fit before the lease runs out), or sooner to retry a failure.
        public var nextRenewal: Instant
        /// Why the last request on this lease failed, cleared by a renewal.
        public var lastFailure: String?

        init(id: Int64, ttl: Duration, sentAt: Instant, margin: Duration) {
            self.id = id
            self.ttl = ttl
            renewedAt = sentAt
            validUntil = sentAt + ttl - margin
            nextRenewal = sentAt + ttl / 3
        }

        /// "0x…": how etcdctl prints lease ids.
        public var hexID: String { "0x" + String(UInt64(bitPattern: id), radix: 16) }
    }

    public enum State: Sendable, Equatable {
        /// Not acquiring: never started, or released.
        case idle
        /// A lease is being granted; `retryAt` after a failure.
        case granting(retryAt: Instant?)
        /// A lease is granted and the key is being claimed with it; `retryAt` after a failure.
        case claiming(Lease, retryAt: Instant?)
        /// The key and `term` are claimed; this node acts once the term is recorded locally
        /// (tried again at `retryAt` after a failure).
        case recording(Lease, term: WitnessTerm, retryAt: Instant?)
        /// A resume found another term than the one this node held (`by`; nil: the term key is
        /// gone): another copy may have been active since, this one must never act again.
        case superseded(Lease, by: WitnessTerm?)
        /// `holder` has the key; the claim is tried again at `retryAt`.
        case refused(Lease, holder: String, retryAt: Instant)
        /// This node holds the key (valid while `mayAct`).
        case held(Lease)
        /// The held lease ran out or etcd dropped it; `start` to acquire again.
        case lost(reason: String)
    }

    public enum Action: Sendable, Equatable {
        /// Grant a lease of `ttl`, then report `granted` or `requestFailed`.
        case sendGrant(ttl: Duration)
        /// Claim the key with `lease` if the term key holds `expecting` (nil: absent), writing
        /// `next`; then report `claimed`, `claimRefused`, `termMismatch` or `requestFailed`.
        case sendClaim(lease: Int64, expecting: WitnessTerm?, next: WitnessTerm)
        /// Record `term` durably as the one this node holds, then report `termRecorded` or `requestFailed`.
        case recordTerm(WitnessTerm)
        /// Another term superseded this node's (the reason): it must not act, and stop trying to resume.
        case superseded(String)
        /// Renew `lease`, then report `renewed` (or `expired`) or `requestFailed`.
        case sendKeepAlive(lease: Int64)
        /// Call `poll` at this instant (earlier does no harm).
        case wait(until: Instant)
        /// The held lease can no longer be trusted; reported once. Acting must have stopped.
        case lost(String)
        /// Nothing to do until `start`.
        case none
    }

    public let configuration: Configuration
    /// This node's name: the holder of the terms it claims.
    public let node: String
    public private(set) var state: State = .idle
    /// The term this node's last successful claim wrote (or, before any, the one it recorded
    /// when it last ran): what a `resume` expects the term key to hold. Nil: none.
    public private(set) var term: WitnessTerm?
    /// What the acquisition under way accepts.
    public private(set) var intent: ClaimIntent = .resume
    /// The term the next claim expects: `term` for a resume, the last one seen for a takeover.
    private var expected: WitnessTerm?

    /// - Parameters:
    ///   - node: this node's name.
    ///   - term: the term this node recorded last (nil: it never held one).
    public init(configuration: Configuration = Configuration(), node: String, term: WitnessTerm?) {
        self.configuration = configuration
        self.node = node
        self.term = term
    }

    /// True while this node holds the key and the lease surely has not expired at etcd.
    public func mayAct(_ now: Instant) -> Bool {
        guard case .held(let lease) = state else { return false }
        return now < lease.validUntil
    }

    /// The lease held or being used to claim, if any.
    public var lease: Lease? {
        switch state {
        case .claiming(let lease, _), .refused(let lease, _, _), .held(let lease), .recording(let lease, _, _), .superseded(let lease, _): lease
        case .idle, .granting, .lost: nil
        }
    }

    /// Begin (or retry at once) acquiring the key for `intent`. A lease still alive from an
    /// earlier attempt is reused, so repeated attempts do not pile up leases at etcd.
    public mutating func start(at now: Instant, intent: ClaimIntent) -> Action {
        self.intent = intent
        expected = term
        switch state {
        case .idle, .lost, .granting:
            state = .granting(retryAt: nil)
        case .claiming(let lease, _), .refused(let lease, _, _):
            state = .claiming(lease, retryAt: nil)
        case .superseded(let lease, _):
            // Terms only grow: a resume stays refused without asking etcd again.
            if intent == .takeOver { state = .claiming(lease, retryAt: nil) }
        case .held, .recording:
            break
        }
        return poll(now)
    }

    /// What to do at `now`: a request that is due, a wait, or losing a lease that ran out.
    public mutating func poll(_ now: Instant) -> Action {
        switch state {
        case .idle, .lost:
            return .none
        case .granting(let retryAt):
            if let retryAt, now < retryAt { return .wait(until: retryAt) }
            return .sendGrant(ttl: configuration.requestedTTL)
        case .claiming(let lease, let retryAt):
            if let retryAt, now < retryAt { return .wait(until: retryAt) }
            return nextClaimStep(lease, now)
        case .refused(let lease, _, let retryAt):
            if now < retryAt { return .wait(until: retryAt) }
            return nextClaimStep(lease, now)
        case .recording(let lease, let term, let retryAt):
            if now >= lease.validUntil {
                // Too late to act on this claim; claim again, expecting the term it wrote.
                expected = self.term
                state = .granting(retryAt: nil)
                return .sendGrant(ttl: configuration.requestedTTL)
            }
            if let retryAt, now < retryAt { return .wait(until: retryAt) }
            return .recordTerm(term)
        case .superseded(_, let newer):
            return .superseded(supersession(by: newer))
        case .held(let lease):
            if now >= lease.validUntil {
                let silence = Self.seconds(now - lease.renewedAt)
                let reason = "lease \(lease.hexID) not renewed for \(silence) s: \(lease.lastFailure ?? "no keep-alive reply")"
                state = .lost(reason: reason)
                return .lost(reason)
            }
            if now >= lease.nextRenewal { return .sendKeepAlive(lease: lease.id) }
            return .wait(until: min(lease.nextRenewal, lease.validUntil))
        }
    }

    /// A claim attempt with a lease that is not (yet) holding the key: a lease too old to trust
    /// is replaced, one due for renewal is renewed first.
    private mutating func nextClaimStep(_ lease: Lease, _ now: Instant) -> Action {
        if now >= lease.validUntil {
            state = .granting(retryAt: nil)
            return .sendGrant(ttl: configuration.requestedTTL)
        }
        if now >= lease.nextRenewal { return .sendKeepAlive(lease: lease.id) }
        return .sendClaim(lease: lease.id, expecting: expected, next: .next(after: expected, by: node))
    }

    /// etcd granted lease `id` for `ttl` to the grant request sent at `sentAt`.
    public mutating func granted(id: Int64, ttl: Duration, sentAt: Instant) -> Action {
        // A grant reply outside `granting` answers an attempt given up since; the lease expires unused.
        guard case .granting = state else { return .none }
        let lease = Lease(id: id, ttl: ttl, sentAt: sentAt, margin: configuration.margin(forTTL: ttl))
        state = .claiming(lease, retryAt: nil)
        return nextClaimStep(lease, sentAt)
    }

    /// The claim succeeded: the key names this node and lives with the lease, and the term key
    /// holds the claim's term, which must be recorded before this node acts.
    public mutating func claimed(at now: Instant) -> Action {
        switch state {
        case .claiming(let lease, _), .refused(let lease, _, _):
            let claimed = WitnessTerm.next(after: expected, by: node)
            // etcd holds it from now on, recorded or not: the next claim expects it.
            term = claimed
            expected = claimed
            state = .recording(lease, term: claimed, retryAt: nil)
            return poll(now)
        case .idle, .granting, .held, .lost, .recording, .superseded:
            return poll(now)
        }
    }

    /// The claimed term is recorded durably: this node may act.
    public mutating func termRecorded(at now: Instant) -> Action {
        guard case .recording(let lease, _, _) = state else { return poll(now) }
        state = .held(lease)
        return poll(now)
    }

    /// The claim was refused because the term key held `current` (nil: absent), not the
    /// expected term. A takeover claims again after it; a resume is superseded.
    public mutating func termMismatch(current: WitnessTerm?, at now: Instant) -> Action {
        switch state {
        case .claiming(let lease, _), .refused(let lease, _, _):
            switch intent {
            case .takeOver:
                expected = current
                state = .claiming(lease, retryAt: nil)
                return nextClaimStep(lease, now)
            case .resume:
                state = .superseded(lease, by: current)
                return .superseded(supersession(by: current))
            }
        case .idle, .granting, .held, .lost, .recording, .superseded:
            return poll(now)
        }
    }

    /// Why this node may never resume, once a resume found another term; nil otherwise.
    public var supersession: String? {
        guard case .superseded(_, let newer) = state else { return nil }
        return supersession(by: newer)
    }

    /// Why a resume is refused when the term key holds `newer`.
    private func supersession(by newer: WitnessTerm?) -> String {
        let held = term.map { "the \($0) this node held last" } ?? "no term (this node never held the VM's witness key)"
        guard let newer else {
            return "the witness term key is gone (this node's last was \(term?.description ?? "no term")): its copy of the VM must not resume"
        }
        return "\(newer.holder) claimed the VM in witness term \(newer.number) after \(held): this copy of the VM must not resume"
    }

    /// `holder` has the key. Its lease may end any time: the claim is tried again after the poll interval.
    public mutating func claimRefused(holder: String, at now: Instant) -> Action {
        switch state {
        case .claiming(let lease, _), .refused(let lease, _, _):
            let retryAt = now + configuration.pollInterval(forTTL: lease.ttl)
            state = .refused(lease, holder: holder, retryAt: retryAt)
            return .wait(until: retryAt)
        case .idle, .granting, .held, .lost, .recording, .superseded:
            return poll(now)
        }
    }

    /// A keep-alive sent at `sentAt` renewed the lease to `remaining` (`.zero`: etcd no longer knows it).
    public mutating func renewed(remaining: Duration, sentAt: Instant) -> Action {
        guard remaining > .zero else { return expired(at: sentAt) }
        guard var lease else { return .none }
        // A reply to an older request than the last success must not move validity back.
        if sentAt >= lease.renewedAt {
            lease = Lease(id: lease.id, ttl: remaining, sentAt: sentAt, margin: configuration.margin(forTTL: remaining))
        }
        switch state {
        case .held:
            state = .held(lease)
            return .wait(until: min(lease.nextRenewal, lease.validUntil))
        case .claiming, .refused:
            state = .claiming(lease, retryAt: nil)
            return nextClaimStep(lease, sentAt)
        case .recording(_, let term, let retryAt):
            state = .recording(lease, term: term, retryAt: retryAt)
            return poll(sentAt)
        case .idle, .granting, .lost, .superseded:
            return .none
        }
    }

    /// etcd no longer knows the lease (a keep-alive returned TTL 0): the key went with it.
    public mutating func expired(at now: Instant) -> Action {
        switch state {
        case .held(let lease):
            let reason = "lease \(lease.hexID) expired at etcd (a keep-alive found it gone)"
            state = .lost(reason: reason)
            return .lost(reason)
        case .claiming, .refused, .recording:
            // It expired before the claim went through or was recorded: nothing was held, start with a new one.
            state = .granting(retryAt: nil)
            return .sendGrant(ttl: configuration.requestedTTL)
        case .idle, .granting, .lost, .superseded:
            return poll(now)
        }
    }

    /// The request the last action asked for failed (no reply, or an error from etcd).
    public mutating func requestFailed(_ error: String, at now: Instant) -> Action {
        let retryAt = now + configuration.retryInterval
        switch state {
        case .granting:
            state = .granting(retryAt: retryAt)
        case .claiming(var lease, _):
            lease.lastFailure = error
            state = .claiming(lease, retryAt: retryAt)
        case .refused(var lease, let holder, _):
            lease.lastFailure = error
            state = .refused(lease, holder: holder, retryAt: retryAt)
        case .recording(var lease, let term, _):
            lease.lastFailure = error
            state = .recording(lease, term: term, retryAt: retryAt)
        case .held(var lease):
            lease.lastFailure = error
            lease.nextRenewal = retryAt
            state = .held(lease)
        case .idle, .lost, .superseded:
            break
        }
        return poll(now)
    }

    /// Stops acquiring or holding. Returns the lease to revoke, if there is one.
    public mutating func release() -> Int64? {
        defer { state = .idle }
        return lease?.id
    }

    /// Tenths of a second, for messages.
    static func seconds(_ duration: Duration) -> Double {
        (duration.seconds * 10).rounded() / 10
    }
}
