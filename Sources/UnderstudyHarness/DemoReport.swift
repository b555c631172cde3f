import UnderstudyAgent
import UnderstudySystem

/// What `understudy demo` measured (`--json` prints it with snake_case keys).
public struct DemoReport: Sendable, Codable {
    /// The failover kept every value the client had received, and the client got replies again.
    public var ok = false
    public var message = ""
    public var protectedSeconds: Double
    /// The heartbeat timeout both agents ran with: silence after which a peer counts as lost.
    public var heartbeatTimeoutMs: Double
    /// Checkpoints the primary had taken when it was killed, and its statistics then.
    public var checkpoints = 0
    public var checkpointsPerSecond = 0.0
    public var pauseMsP50 = 0.0
    public var pauseMsP99 = 0.0
    public var pauseMsMax = 0.0
    public var dirtyPagesPerCheckpoint = 0.0
    public var wireBytes = 0
    public var rawBytes = 0
    public var drillOk = false
    public var drillRecoveryMs: Double?
    public var drillStateAgeMs: Double?
    /// From the kill to the backup reporting itself the primary (polled every 50 ms).
    public var takeoverMs: Double?
    /// From the kill to the first reply on the client's connection: the failover the client sees.
    public var failoverMs: Double?
    /// Where `failoverMs` went, from the backup's log.
    public var failoverBreakdown: FailoverTimeline?
    /// Times the backup decided the live primary was lost ("primary lost") before the kill: false
    /// takeovers of the heartbeat timeout. Must be 0.
    public var falseAlarms = 0
    /// Times the primary ended a session because the live backup looked lost ("backup lost"):
    /// no takeover, but a resynchronisation.
    public var backupLostBeforeKill = 0
    /// The counter client's round trip (one connection, one request at a time), p50: while the VM
    /// was protected (before the drill), and after the failover, where the survivor runs it
    /// unprotected (its peer is dead); and what protection adds, protected minus unprotected.
    public var roundTripProtectedMsP50: Double?
    public var roundTripUnprotectedMsP50: Double?
    public var roundTripAddedMsP50: Double?
    /// The client never had to reconnect and got replies after the failover.
    public var connectionSurvived = false
    public var clientRepliesBeforeKill = 0
    public var clientRepliesAfterFailover = 0
    public var lastValueBeforeKill: UInt64?
    public var firstValueAfterFailover: UInt64?
    /// Values the client had received that the surviving VM does not continue from: handed out
    /// again after the failover, or beyond the survivor's counter. Output commit makes it 0.
    public var lostAcknowledgedOutput = 0
    /// The survivor's counter in memory, and whether its disk file ends at the same value.
    public var survivorCounter: UInt64?
    public var survivorDiskAgrees: Bool?

    public init(protectedSeconds: Double, heartbeatTimeoutMs: Double) {
        self.protectedSeconds = protectedSeconds
        self.heartbeatTimeoutMs = heartbeatTimeoutMs
    }

    mutating func record(_ primary: PrimaryStatus) {
        checkpoints = Int(primary.currentEpoch ?? 0)
        checkpointsPerSecond = primary.checkpointsPerSecond ?? 0
        pauseMsP50 = primary.pauseMillisecondsP50 ?? 0
        pauseMsP99 = primary.pauseMillisecondsP99 ?? 0
        pauseMsMax = primary.pauseMillisecondsMax ?? 0
        dirtyPagesPerCheckpoint = primary.dirtyPagesPerCheckpoint ?? 0
        wireBytes = primary.wireBytes ?? 0
        rawBytes = primary.rawBytes ?? 0
    }

    /// The round-trip figures from the protected and the unprotected requests' round trips.
    public mutating func recordRoundTrips(protected: [Duration], unprotected: [Duration]) {
        func p50(_ trips: [Duration]) -> Double? {
            trips.isEmpty ? nil : percentile(trips.map { $0.seconds * 1000 }.sorted(), 0.5)
        }
        roundTripProtectedMsP50 = p50(protected)
        roundTripUnprotectedMsP50 = p50(unprotected)
        roundTripAddedMsP50 = roundTripProtectedMsP50.flatMap { protected in roundTripUnprotectedMsP50.map { protected - $0 } }
    }

    /// Counts what the client saw before the kill (`before`, in order) that the survivor lost,
    /// from the values it got after the failover (`after`) and `survivorCounter`, and decides
    /// `ok` (with `failoverMs` and `survivorDiskAgrees`, which must be set first).
    public mutating func finish(before: [UInt64], after: [UInt64]) {
        // The survivor continues from the value before its first reply; any value the client had
        // at or beyond that was handed out by state the survivor never received.
        let resumedFrom = after.first.map { $0 - 1 }
        lostAcknowledgedOutput = before.filter { value in
            (resumedFrom.map { value > $0 } ?? false) || (survivorCounter.map { value > $0 } ?? false)
        }.count
        let increasing = zip(after, after.dropFirst()).allSatisfy { $0 < $1 }
        ok = failoverMs != nil && lostAcknowledgedOutput == 0 && increasing && survivorDiskAgrees != false && falseAlarms == 0
        if message.isEmpty {
            message = ok ? "the backup took over; the client's \(connectionSurvived ? "TCP connection went on" : "requests went on after a reconnect") with nothing lost or repeated"
                : failoverMs == nil ? "the client got no reply after the failover"
                : lostAcknowledgedOutput > 0 ? "the client had received \(lostAcknowledgedOutput) values the survivor does not continue from"
                : !increasing ? "the client's values after the failover did not increase"
                : falseAlarms > 0 ? "the backup took the live primary for lost \(falseAlarms) times before the kill" : "the survivor's disk and memory disagree"
        }
    }
}
