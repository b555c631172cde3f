/// Failure detection as a value with no I/O: when to send a heartbeat, and when the peer counts
/// as lost, from the instants frames were sent to it and heard from it. The caller passes the
/// clock, so the rules are tested without sockets or sleeps.
///
/// Every frame heard counts as a sign of life (checkpoints and acks too), on any path: the
/// replication connection and the optional datagram path. The peer is lost only when every path
/// has been silent for `timeout`, so one broken link is not taken for a dead peer.
public struct HeartbeatMonitor: Sendable {
    public struct Configuration: Sendable, Equatable {
        /// How often each side sends a heartbeat when it sends nothing else.
        public var interval: Duration
        /// Intervals without a sign of life before the peer is lost...
        public var missedLimit: Int
        /// ...but never less than this, so a short interval does not make the detector jumpy.
        public var minimumTimeout: Duration

        public init(interval: Duration = .milliseconds(40), missedLimit: Int = 5, minimumTimeout: Duration = .milliseconds(200)) {
            precondition(interval > .zero && missedLimit > 0)
            self.interval = interval
            self.missedLimit = missedLimit
            self.minimumTimeout = minimumTimeout
        }

        /// Silence on every path for this long means the peer is lost.
        public var timeout: Duration { max(interval * missedLimit, minimumTimeout) }
    }

    /// Where a sign of life came from.
    public enum Path: String, Sendable, Hashable, CaseIterable {
        case replication
        case datagram
    }

    /// What the caller should do after `poll`.
    public struct Decision: Sendable, Equatable {
        /// Nothing was sent for an interval: send a heartbeat (then call `sent`).
        public var sendHeartbeat: Bool
        /// Reported once, when the peer becomes lost: how long every path had been silent.
        public var peerLost: Duration?
    }

    public let configuration: Configuration
    private var lastHeard: [Path: ContinuousClock.Instant] = [:]
    private var lastSent: ContinuousClock.Instant?
    /// Silence is counted from here when nothing was heard yet (the monitor's start).
    private var watchingSince: ContinuousClock.Instant
    public private(set) var isLost = false

    public init(configuration: Configuration = Configuration(), now: ContinuousClock.Instant) {
        self.configuration = configuration
        watchingSince = now
    }

    /// A frame arrived from the peer on `path`. Returns true when the peer had been lost and is back.
    @discardableResult
    public mutating func heard(on path: Path, at now: ContinuousClock.Instant) -> Bool {
        lastHeard[path] = max(lastHeard[path] ?? now, now)
        defer { isLost = false }
        return isLost
    }

    /// A heartbeat (or any frame) was sent to the peer.
    public mutating func sent(at now: ContinuousClock.Instant) {
        lastSent = max(lastSent ?? now, now)
    }

    /// Starts counting silence afresh from `now` (a new session, or a peer that was lost and is
    /// being waited for again), forgetting what was heard before.
    public mutating func restart(at now: ContinuousClock.Instant) {
        lastHeard = [:]
        watchingSince = now
        isLost = false
    }

    /// How long every path has been silent.
    public func silence(at now: ContinuousClock.Instant) -> Duration {
        now - (lastHeard.values.max() ?? watchingSince)
    }

    /// How long `path` has been silent; nil when nothing was ever heard on it.
    public func silence(on path: Path, at now: ContinuousClock.Instant) -> Duration? {
        lastHeard[path].map { now - $0 }
    }

    public mutating func poll(now: ContinuousClock.Instant) -> Decision {
        let sendHeartbeat = lastSent.map { now - $0 >= configuration.interval } ?? true
        let silent = silence(at: now)
        guard !isLost, silent >= configuration.timeout else { return Decision(sendHeartbeat: sendHeartbeat, peerLost: nil) }
        isLost = true
        return Decision(sendHeartbeat: sendHeartbeat, peerLost: silent)
    }
}
