import Foundation

extension AgentStatus {
    /// A table for people; `--json` prints the fields as they are.
    public var humanReadable: String {
        var rows: [(String, String)] = [("role", role.rawValue), ("vm", vm), ("state", state)]
        if let detail { rows.append(("detail", detail)) }
        switch self {
        case .primary(let status): rows += status.rows
        case .backup(let status): rows += status.rows
        case .starting: break
        }
        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }.joined(separator: "\n")
    }
}
