import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// TEMPORARY experiment (not to be committed): timestamps along the output path.
public enum HopTrace {
    public static let enabled = getenv("UNDERSTUDY_HOPTRACE") != nil
    static let events = Mutex<[(String, UInt64)]>([])
    public static func mark(_ name: String) {
        guard enabled else { return }
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let ns = UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
        events.withLock { $0.append((name, ns)) }
    }
    public static func mark(_ name: String, at ns: UInt64) {
        guard enabled else { return }
        events.withLock { $0.append((name, ns)) }
    }
    public static func dump(to path: String) {
        guard enabled else { return }
        let text = events.withLock { e -> String in
            defer { e.removeAll() }
            return e.map { "\($0.1) \($0.0)" }.joined(separator: "\n") + "\n"
        }
        var rt = timespec(), mono = timespec()
        clock_gettime(CLOCK_REALTIME, &rt); clock_gettime(CLOCK_MONOTONIC, &mono)
        let offset = (Int64(rt.tv_sec) - Int64(mono.tv_sec)) * 1_000_000_000 + Int64(rt.tv_nsec) - Int64(mono.tv_nsec)
        let f = fopen(path, "w"); fputs("# offset \(offset)\n" + text, f); fclose(f)
    }
}
