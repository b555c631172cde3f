import Foundation

/// The drill sandboxes (network namespaces `us-drill-…`) an agent's log names: a drill logs its
/// sandbox just before it makes it (so even an agent killed while making it named it), and a test
/// can tell its own drills' namespaces from those of other suites running at the same time.
public enum DrillSandboxLog {
    /// The sandboxes named in the log file at `path` (none when it cannot be read).
    public static func sandboxes(inLog path: String) -> Set<String> {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return Set(text.matches(of: /"sandbox":"(us-drill-[0-9a-f]+)"/).map { String($0.output.1) })
    }
}
