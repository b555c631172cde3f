/// When a node's registry publisher grants its lease, renews it, writes its entries or waits: a
/// value with no I/O, so the timing is tested without etcd or sleeps.
///
/// The entries hang on one lease. It is renewed every third of its TTL (two more tries fit
/// before it runs out); counted from the instant a request was sent, which is before etcd
/// restarts its countdown, so when this side thinks the lease ran out etcd may still hold it,
/// never the other way round: then a new lease is granted and every entry written again
/// (writing a key moves it to the new lease, so the old one's end deletes nothing).
///
/// Entries are written at once after a grant and when the caller says they changed (role or
/// state), otherwise once per `period`; between writes the caller looks for changes every
/// quarter period. A failed request is retried a period later; only the first failure of a run
/// of them is worth a log line (`failed` says so), and the first success after them too.
public struct FleetPublisherStateMachine: Sendable {
    public typealias Instant = ContinuousClock.Instant

    public enum Action: Sendable, Equatable {
        case grant
        case renew(lease: Int64)
        case publish(lease: Int64)
        /// Nothing due before `until`: look for changes then.
        case wait(until: Instant)
    }

    public struct Lease: Sendable, Equatable {
        public var id: Int64
        public var ttl: Duration
        /// When the last grant or renewal that succeeded was sent.
        public var renewedAt: Instant

        var expiresAt: Instant { renewedAt + ttl }
        var renewalDue: Instant { renewedAt + ttl / 3 }
    }

    public let period: Duration
    public private(set) var lease: Lease?
    /// When the entries were last written on the current lease; nil: not yet.
    private var publishedAt: Instant?
    private var retryAt: Instant?
    /// The first failure of the current run of failures; nil: the last request succeeded.
    public private(set) var failure: String?

    public init(period: Duration) {
        precondition(period > .zero)
        self.period = period
    }

    /// What to do at `now`; `changed`: the entries differ in role or state from those written last.
    public mutating func next(at now: Instant, changed: Bool) -> Action {
        if let retryAt, now < retryAt { return .wait(until: retryAt) }
        retryAt = nil
        guard let current = lease, now < current.expiresAt else {
            // Never granted, or run out: whatever hung on it may be gone.
            lease = nil
            publishedAt = nil
            return .grant
        }
        if now >= current.renewalDue { return .renew(lease: current.id) }
        guard let publishedAt, !changed, now < publishedAt + period else { return .publish(lease: current.id) }
        return .wait(until: min(current.renewalDue, publishedAt + period, now + period / 4))
    }

    /// A lease was granted to a request sent at `sentAt`. Returns the failure this success ends, if any.
    public mutating func granted(id: Int64, ttl: Duration, sentAt: Instant) -> String? {
        lease = Lease(id: id, ttl: ttl, renewedAt: sentAt)
        publishedAt = nil
        return succeeded()
    }

    /// A renewal sent at `sentAt` came back with `remaining` (`.zero`: etcd no longer knows the
    /// lease, and the entries on it are gone). Returns the failure this success ends, if any.
    public mutating func renewed(remaining: Duration, sentAt: Instant) -> String? {
        if remaining > .zero, var current = lease {
            current.renewedAt = sentAt
            current.ttl = remaining
            lease = current
        } else {
            lease = nil
            publishedAt = nil
        }
        return succeeded()
    }

    /// The entries were written at `at`. Returns the failure this success ends, if any.
    public mutating func published(at: Instant) -> String? {
        publishedAt = at
        return succeeded()
    }

    /// A request failed at `at`; it is tried again a period later. True when this starts a run
    /// of failures (log it; the next ones repeat it).
    public mutating func failed(_ reason: String, at: Instant) -> Bool {
        retryAt = at + period
        guard failure == nil else { return false }
        failure = reason
        return true
    }

    /// Stopping: the lease to revoke (deleting the entries at once), if one may still hold.
    public mutating func stop(at now: Instant) -> Int64? {
        defer {
            lease = nil
            publishedAt = nil
        }
        guard let lease, now < lease.expiresAt else { return nil }
        return lease.id
    }

    private mutating func succeeded() -> String? {
        defer { failure = nil }
        return failure
    }
}
