/// Asynchronous protection's bookkeeping: how far the replica lags behind the running guest,
/// whether that breaks the recovery-point objective, and how hard to slow the guest down.
/// A value with no clock: the I/O layer passes the time.
///
/// The lag is the age of the newest acknowledged checkpoint: if the primary died now, the backup
/// would resume from that capture, and everything the guest did since would be lost.
public struct RecoveryPointMonitor: Sendable, Equatable {
    public enum Event: Sendable, Equatable {
        /// The lag went over the objective.
        case exceeded(lag: Duration)
        /// The lag is back under the objective after `lasted` over it.
        case recovered(lasted: Duration)
    }

    public let objective: Duration
    /// Slow the guest while the lag is over the objective.
    public let throttles: Bool
    /// The share of each interval the guest is held paused (0 when not throttled, at most `maxThrottle`).
    public private(set) var throttle: Double = 0
    public private(set) var exceededSince: ContinuousClock.Instant?
    private var captures: [(epoch: UInt64, at: ContinuousClock.Instant)] = []
    /// When the newest acknowledged checkpoint was captured (or when protection started).
    private var replicaAsOf: ContinuousClock.Instant

    public static let maxThrottle = 0.9
    static let firstThrottle = 0.2
    static let throttleStep = 0.05
    /// The lag must fall this far under the objective before the guest runs at full speed again.
    static let releaseBelow = 0.8

    /// - Parameter now: when the guest was as the replica is now: the end of a full sync, or the
    ///   capture of a catch-up's base (the replica stays there until the catch-up is acknowledged).
    public init(objective: Duration, throttles: Bool, now: ContinuousClock.Instant) {
        precondition(objective > .zero)
        self.objective = objective
        self.throttles = throttles
        replicaAsOf = now
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.objective == b.objective && a.throttles == b.throttles && a.throttle == b.throttle && a.exceededSince == b.exceededSince
            && a.replicaAsOf == b.replicaAsOf && a.captures.map(\.epoch) == b.captures.map(\.epoch) && a.captures.map(\.at) == b.captures.map(\.at)
    }

    public func lag(now: ContinuousClock.Instant) -> Duration { now - replicaAsOf }

    public var isExceeded: Bool { exceededSince != nil }

    /// Checkpoint `epoch` was captured at `at`.
    public mutating func captured(_ epoch: UInt64, at: ContinuousClock.Instant) {
        captures.append((epoch, at))
    }

    /// The backup acknowledged epochs through `epoch`. Returns the lag just before (the peak the
    /// replica reached, the sample for the lag's percentiles) and an event when the objective
    /// is met again.
    public mutating func acknowledged(through epoch: UInt64, now: ContinuousClock.Instant) -> (peak: Duration, event: Event?) {
        let peak = lag(now: now)
        if let last = captures.lastIndex(where: { $0.epoch <= epoch }) {
            replicaAsOf = max(replicaAsOf, captures[last].at)
            captures.removeFirst(last + 1)
        }
        return (peak, evaluate(now: now))
    }

    /// Checks the lag against the objective without touching the throttle (between checkpoints:
    /// while a catch-up is on the link). Returns an event when the objective was crossed either way.
    public mutating func check(now: ContinuousClock.Instant) -> Event? { evaluate(now: now) }

    /// Checks the lag at a checkpoint; adjusts the throttle. Returns an event when the objective
    /// was crossed either way.
    public mutating func poll(now: ContinuousClock.Instant) -> Event? {
        let event = evaluate(now: now)
        guard throttles else { return event }
        let lag = lag(now: now)
        if lag > objective {
            throttle = throttle == 0 ? Self.firstThrottle : min(Self.maxThrottle, throttle + Self.throttleStep)
        } else if lag < objective * Self.releaseBelow {
            throttle = max(0, throttle - 2 * Self.throttleStep)
            if throttle < Self.throttleStep / 2 { throttle = 0 }
        }
        return event
    }

    private mutating func evaluate(now: ContinuousClock.Instant) -> Event? {
        let lag = lag(now: now)
        if lag > objective, exceededSince == nil {
            exceededSince = now
            return .exceeded(lag: lag)
        }
        if lag <= objective, let since = exceededSince {
            exceededSince = nil
            return .recovered(lasted: now - since)
        }
        return nil
    }
}
