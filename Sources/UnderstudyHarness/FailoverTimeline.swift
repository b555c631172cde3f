import Foundation
import UnderstudyAgent

/// Where a failover's time went, as a client of the VM saw it, each part in milliseconds: from the
/// kill of the primary to the backup's decision that the primary is lost (`detectionMs`: the
/// heartbeat timeout plus how long before the kill the primary was last heard), to this node
/// holding the fence (`fenceMs`), to the VM running on the backup (`activationMs`: the replica
/// handed over, QEMU loading the checkpoint's device state, the announce), to the client's first
/// reply on its connection (`resumeToReplyMs`: the client's TCP retransmission reaching the
/// resumed guest, or the guest's own, plus the guest's answer).
///
/// Built from the backup agent's JSON log lines (`AgentLogHandler`), whose wall-clock times this
/// host shares with the caller, and the caller's wall-clock times of the kill and the reply.
public struct FailoverTimeline: Sendable, Codable, Equatable {
    public var detectionMs: Double?
    public var fenceMs: Double?
    public var activationMs: Double?
    public var resumeToReplyMs: Double?

    /// The log messages that mark the steps (`BackupSupervisor`, `PairNode`, `Activator`).
    static let lost = "primary lost"
    static let takingOver = "taking over"
    static let running = "VM running on this node"

    /// - Parameters:
    ///   - backupLog: the backup agent's log, JSON lines (other lines are skipped).
    ///   - killedAt: when the primary was killed; steps logged before it (an earlier loss) are ignored.
    ///   - firstReplyAt: when the client's first reply after the kill arrived; nil: none.
    public init(backupLog: String, killedAt: Date, firstReplyAt: Date?) {
        var marks: [String: Date] = [:]
        for message in [Self.lost, Self.takingOver, Self.running] {
            marks[message] = Self.times(of: message, in: backupLog).first { $0 >= killedAt }
        }
        func milliseconds(_ from: Date?, _ to: Date?) -> Double? {
            guard let from, let to else { return nil }
            return to.timeIntervalSince(from) * 1000
        }
        detectionMs = milliseconds(killedAt, marks[Self.lost])
        fenceMs = milliseconds(marks[Self.lost], marks[Self.takingOver])
        activationMs = milliseconds(marks[Self.takingOver], marks[Self.running])
        resumeToReplyMs = milliseconds(marks[Self.running], firstReplyAt)
    }

    /// When an agent's log (JSON lines) recorded `message`, in order.
    public static func times(of message: String, in log: String) -> [Date] {
        log.split(separator: "\n").compactMap { line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  object["message"] as? String == message, let text = object["time"] as? String else { return nil }
            return try? AgentLogHandler.timeStyle.parse(text)
        }
    }
}
