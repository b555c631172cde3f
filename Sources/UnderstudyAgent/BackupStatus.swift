import Foundation
import UnderstudySystem

/// A backup's status: the replica it keeps and what it hears of the primary.
public struct BackupStatus: Sendable, Codable, Equatable {
    public enum Phase: String, Sendable, Codable {
        /// Listening for the primary's sessions and keeping the replica.
        case serving
        /// A lost backup come back after a spare host took its place (`[fleet]`): no replica, never activates.
        case stoodDown = "stood-down"
    }

    public var vm: String
    public var state: Phase
    public var detail: String?
    public var committedEpoch: UInt64?
    public var syncPages: Int?
    public var sessions: Int?
    /// Who may be the active copy: the witness and whether this node holds its lease.
    public var fence: String?
    /// The witness term this node claimed last (held while `fence` says so); nil: none, or no witness.
    public var witnessTerm: UInt64?
    /// Why the replica was reset and cannot be activated until a full sync (a demoted node's); nil: not reset.
    public var replicaReset: String?
    /// Milliseconds since the primary was last heard on any path, and the timeout that loses it.
    public var peerSilentMilliseconds: Double?
    public var heartbeatTimeoutMilliseconds: Double?
    /// Per checkpoint, p50 and p99 over the recent ones: sealing it durably before the ACK, the
    /// journal's fsync within that, and applying it to the replica after the ACK.
    public var sealMillisecondsP50: Double?
    public var sealMillisecondsP99: Double?
    public var journalSyncMillisecondsP50: Double?
    public var journalSyncMillisecondsP99: Double?
    public var applyMillisecondsP50: Double?
    public var applyMillisecondsP99: Double?
    /// The scheduled inspections of the replica (`[inspect]`); nil: none scheduled.
    public var inspection: InspectionStatus?
    /// The scheduled drills (`drill.every`); nil: none scheduled.
    public var drills: DrillStatus?
    /// The last scheduled drill's outcome; nil: none has ended yet.
    public var lastDrill: DrillOutcome?
    /// What needs the operator (a failed drill, none passed for too long); nil: nothing.
    public var problems: [String]?

    public init(vm: String, state: Phase, detail: String? = nil) {
        self.vm = vm
        self.state = state
        self.detail = detail
    }

    /// The status from the receiver's statistics; `detail` defaults to its last session's error.
    public init(vm: String, state: Phase, detail: String? = nil, statistics s: BackupStatistics) {
        self.init(vm: vm, state: state, detail: detail ?? s.lastSessionError)
        committedEpoch = s.committedEpoch
        syncPages = s.syncPages
        sessions = s.sessions
        guard !s.commitTimings.isEmpty else { return }
        func milliseconds(_ phase: KeyPath<CommitTiming, Duration>) -> [Double] { s.commitTimings.map { $0[keyPath: phase].seconds * 1000 }.sorted() }
        let seal = milliseconds(\.seal), sync = milliseconds(\.journalSync), apply = milliseconds(\.apply)
        (sealMillisecondsP50, sealMillisecondsP99) = (percentile(seal, 0.5), percentile(seal, 0.99))
        (journalSyncMillisecondsP50, journalSyncMillisecondsP99) = (percentile(sync, 0.5), percentile(sync, 0.99))
        (applyMillisecondsP50, applyMillisecondsP99) = (percentile(apply, 0.5), percentile(apply, 0.99))
    }

    /// The rows of `understudy status`'s table for this role, in order.
    var rows: [(String, String)] {
        var rows: [(String, String)] = []
        func add(_ name: String, _ value: String?) { if let value { rows.append((name, value)) } }
        // First, in capitals: what an operator glancing at the table must not miss.
        for problem in problems ?? [] { rows.append(("PROBLEM", problem)) }
        add("committed epoch", committedEpoch.map { "\($0)" })
        add("replica reset", replicaReset)
        add("initial sync pages", syncPages.map { "\($0)" })
        add("sessions", sessions.map { "\($0)" })
        if let seal = sealMillisecondsP50, let sealP99 = sealMillisecondsP99, let sync = journalSyncMillisecondsP50,
           let syncP99 = journalSyncMillisecondsP99, let apply = applyMillisecondsP50, let applyP99 = applyMillisecondsP99 {
            rows.append(("checkpoint commit", String(format: "seal before ACK p50 %.2f ms, p99 %.2f (journal sync p50 %.2f, p99 %.2f); apply after ACK p50 %.2f, p99 %.2f",
                                                     seal, sealP99, sync, syncP99, apply, applyP99)))
        }
        add("active copy", fence)
        if let silent = peerSilentMilliseconds, let timeout = heartbeatTimeoutMilliseconds {
            rows.append(("peer", String(format: "last heard %.0f ms ago (lost after %.0f ms)", silent, timeout)))
        }
        add("inspection", inspection?.row)
        add("drills", drills?.row)
        add("last drill", lastDrill?.summary)
        return rows
    }
}
