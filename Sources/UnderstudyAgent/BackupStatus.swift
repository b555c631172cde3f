import Foundation

/// A backup's status: the replica it keeps and what it hears of the primary.
public struct BackupStatus: Sendable, Codable, Equatable {
    public enum Phase: String, Sendable, Codable {
        /// Listening for the primary's sessions and keeping the replica.
        case serving
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
    }

    /// The rows of `understudy status`'s table for this role, in order.
    var rows: [(String, String)] {
        var rows: [(String, String)] = []
        func add(_ name: String, _ value: String?) { if let value { rows.append((name, value)) } }
        add("committed epoch", committedEpoch.map { "\($0)" })
        add("replica reset", replicaReset)
        add("initial sync pages", syncPages.map { "\($0)" })
        add("sessions", sessions.map { "\($0)" })
        add("active copy", fence)
        if let silent = peerSilentMilliseconds, let timeout = heartbeatTimeoutMilliseconds {
            rows.append(("peer", String(format: "last heard %.0f ms ago (lost after %.0f ms)", silent, timeout)))
        }
        return rows
    }
}
