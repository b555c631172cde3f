import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// CPU time processes used, from /proc: what benchmarks report as a process's CPU share.
public enum ProcessCPUTime {
    /// User plus system CPU seconds of process `pid` (all its threads, not its children); nil
    /// when it does not exist (any more).
    public static func seconds(pid: Int32) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return nil }
        return seconds(stat: text)
    }

    /// CPU seconds of this process's threads, summed by thread name (a pool's workers share one),
    /// from /proc/self/task. Threads that ended are not in it.
    public static func secondsByThreadName() -> [String: Double] {
        var byName: [String: Double] = [:]
        for task in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? [] {
            guard let text = try? String(contentsOfFile: "/proc/self/task/\(task)/stat", encoding: .utf8),
                  let name = threadName(stat: text), let seconds = seconds(stat: text) else { continue }  // a thread that ended meanwhile
            byName[name, default: 0] += seconds
        }
        return byName
    }

    /// The command field of a stat file: between the first '(' and the last ')'.
    static func threadName(stat text: String) -> String? {
        guard let open = text.firstIndex(of: "("), let close = text.lastIndex(of: ")"), open < close else { return nil }
        return String(text[text.index(after: open)..<close])
    }

    /// The same from the text of a /proc/PID/stat file.
    static func seconds(stat text: String) -> Double? {
        // The command (field 2) may contain spaces and parentheses: fields start after the last ')'.
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After the command: state is field 3 of the file, utime 14, stime 15 (in clock ticks).
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
