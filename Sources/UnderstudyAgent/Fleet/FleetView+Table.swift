import Foundation

extension FleetView {
    /// `understudy fleet status`: a summary line, then one row per VM, problems first.
    public var statusTable: String {
        let summary = "\(vms.count) VM\(vms.count == 1 ? "" : "s"): "
            + Problem.allCases.map { "\(counts[$0] ?? 0) \($0.label)" }.joined(separator: ", ")
        let header = ["VM", "PROBLEM", "PRIMARY", "BACKUP", "STATE", "MODE", "EPOCH", "LAG", "PAUSE P99", "LAST DRILL", "REASON"]
        let rows = vms.map { row -> [String] in
            [row.vm, row.problem.label, row.primaryHost ?? "-", row.backupHost ?? row.backupNode.map { "(\($0))" } ?? "-", row.state,
             row.protectionMode ?? "-", row.committedEpoch.map { "\($0)" } ?? "-",
             row.lagMilliseconds.map { String(format: "%.0f ms", $0) } ?? "-",
             row.pauseMillisecondsP99.map { String(format: "%.2f ms", $0) } ?? "-", drill(row), row.reason]
        }
        return ([summary] + Self.table([header] + rows)).joined(separator: "\n")
    }

    /// `understudy fleet hosts`: one row per host, with what it runs and can still take.
    public var hostsTable: String {
        let header = ["HOST", "PRIMARIES", "BACKUPS", "+PRIMARY", "+BACKUP", "MEMORY FREE", "REPLICA SPACE FREE", "SLOT", "UPDATED"]
        let rows = hosts.map { host -> [String] in
            [host.host, "\(host.primaries)" + (host.maxPrimaries.map { "/\($0)" } ?? ""), "\(host.backups)" + (host.maxBackups.map { "/\($0)" } ?? ""),
             "\(host.primarySlots)", "\(host.backupSlots)",
             "\(Self.gibibytes(host.memoryAvailableBytes)) of \(Self.gibibytes(host.memoryTotalBytes))",
             host.replicaSpaceFreeBytes.map { "\(Self.gibibytes($0)) of \(Self.gibibytes(host.replicaSpaceTotalBytes ?? 0))" } ?? "-",
             Self.gibibytes(host.slotMemoryBytes), "\(Self.age(now - host.publishedAt)) ago"]
        }
        return Self.table([header] + rows).joined(separator: "\n")
    }

    private func drill(_ row: Row) -> String {
        guard let at = row.lastDrillAt else { return "never" }
        var text = "\(row.lastDrillPassed == false ? "failed" : "passed") \(Self.age(now - at)) ago"
        if let seconds = row.lastDrillRecoverySeconds, row.lastDrillPassed != false { text += String(format: " (%.1f s)", seconds) }
        return text
    }

    private static func gibibytes(_ bytes: UInt64) -> String { String(format: "%.1f GiB", Double(bytes) / Double(1 << 30)) }

    /// Columns padded to their widest cell, two spaces apart; the last column is not padded.
    private static func table(_ rows: [[String]]) -> [String] {
        guard let columns = rows.first?.count else { return [] }
        let widths = (0..<columns).map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { column, cell in
                column == columns - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }
    }
}
