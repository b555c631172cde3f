extension ConsistencyHarness {
    /// What one trial found. `violations` break an invariant (lost or repeated output, two
    /// active copies, disagreeing disk, a dirty file system); `problems` kept the trial from
    /// checking them (a guest that never answered, an unexpected reply).
    public struct Outcome: Sendable {
        public var violations: [String] = []
        public var problems: [String] = []
        /// Replies the client got whose values the surviving copy's counter does not reach:
        /// output that left before the state producing it was safe.
        public var lostAcknowledgedOutput = 0
        /// Replies whose value was not above the one before: the counter went back or repeated.
        public var counterRegressions = 0
        /// Both nodes claimed the VM, or the copy that lost it sent frames afterwards.
        public var twoActiveCopies = false
        /// The client's one TCP connection carried on across the event (no reconnect).
        public var connectionSurvived = false
        /// `e2fsck -fn` on the surviving copy's disk: nil when the trial ended before it.
        public var fsckClean: Bool?
        public var repliesBefore = 0
        public var repliesAfter = 0
        /// From the event (kill, stop, cut, switchover request) to the reply that ended the
        /// client's longest wait after it: the failover as the client saw it.
        public var failoverMilliseconds: Double?
        /// From the later of the event and the last reply before it to the next reply.
        public var outageMilliseconds = 0.0
        public var longestSilenceMilliseconds = 0.0
        public var summary = ""
        /// Where the logs of a trial with violations or problems were kept.
        public var keptLogs: String?

        public init() {}
    }
}
