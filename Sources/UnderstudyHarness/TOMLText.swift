import Foundation

/// A configuration file as the operator edits it: text, with keys set in place so the rest
/// (comments, order, other tables) stays as written. Used on the files `understudy import`
/// writes, where a test does what its report asks of the operator.
public struct TOMLText: Sendable, Equatable {
    public private(set) var text: String

    public init(_ text: String) { self.text = text }

    /// Sets `key` of `[table]` to `value` (a TOML literal: `"text"`, `3`, `true`, `["a", "b"]`):
    /// replaces the key's line, or adds the line after the table's last entry, or adds the table
    /// at the end.
    public mutating func set(_ key: String, in table: String, to value: String) {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let entry = "\(key) = \(value)"
        guard let header = lines.firstIndex(where: { $0.trimmingCharacters(in: .whitespaces) == "[\(table)]" }) else {
            if lines.last == "" { lines.removeLast() }
            lines += ["", "[\(table)]", entry, ""]
            text = lines.joined(separator: "\n")
            return
        }
        let end = lines[(header + 1)...].firstIndex { $0.trimmingCharacters(in: .whitespaces).hasPrefix("[") } ?? lines.endIndex
        let body = (header + 1)..<end
        if let line = body.first(where: { Self.key(of: lines[$0]) == key }) {
            lines[line] = entry
        } else {
            // After the last entry: blank lines and comments that follow it introduce what comes next.
            let last = body.last { Self.key(of: lines[$0]) != nil } ?? header
            lines.insert(entry, at: last + 1)
        }
        text = lines.joined(separator: "\n")
    }

    /// The key an entry line sets; nil for blank lines, comments and headers.
    private static func key(of line: String) -> String? {
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty, !trimmed.hasPrefix("#"), !trimmed.hasPrefix("["), let equals = trimmed.firstIndex(of: "=") else { return nil }
        return trimmed[..<equals].trimmingCharacters(in: .whitespaces)
    }
}
