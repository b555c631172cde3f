import Foundation

/// Turns SIGINT/SIGTERM (and internal failures, such as QEMU exiting) into one flag that the
/// agent's loops poll and its main thread can wait for.
public final class StopSignal: @unchecked Sendable {
    private let condition = NSCondition()
    private var reason: String?
    private var sources: [DispatchSourceSignal] = []

    public init(signals: [Int32] = [SIGINT, SIGTERM]) {
        for number in signals {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [weak self] in self?.trigger(number == SIGINT ? "interrupted" : "terminated") }
            source.resume()
            sources.append(source)
        }
    }

    /// Records why the agent stops (the first reason wins) and wakes waiters.
    public func trigger(_ why: String) {
        condition.lock()
        if reason == nil { reason = why }
        condition.broadcast()
        condition.unlock()
    }

    public var isSet: Bool {
        condition.lock()
        defer { condition.unlock() }
        return reason != nil
    }

    public var why: String? {
        condition.lock()
        defer { condition.unlock() }
        return reason
    }

    /// Blocks until `trigger` is called or `timeout` passes; true when triggered.
    public func wait(timeout: Duration) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout.seconds)
        condition.lock()
        defer { condition.unlock() }
        while reason == nil, condition.wait(until: deadline) {}
        return reason != nil
    }

    /// Blocks until `trigger` is called; returns the reason.
    @discardableResult
    public func wait() -> String {
        condition.lock()
        defer { condition.unlock() }
        while reason == nil { condition.wait() }
        return reason!
    }
}

/// Where the preload library that arms dirty tracking inside QEMU is installed.
public enum PreloadLibrary {
    public static let fileName = "libUnderstudyPreload.so"

    /// `UNDERSTUDY_PRELOAD`, then next to the running executable (a SwiftPM build), then the
    /// system locations Deploy/ installs to. Nil when none exists.
    public static func locate() -> String? {
        var candidates: [String] = []
        if let explicit = ProcessInfo.processInfo.environment["UNDERSTUDY_PRELOAD"] { candidates.append(explicit) }
        if let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            candidates.append(((executable as NSString).deletingLastPathComponent as NSString).appendingPathComponent(fileName))
        }
        candidates += ["/usr/local/lib/understudy/\(fileName)", "/usr/lib/understudy/\(fileName)"]
        return candidates.first { FileManager.default.isReadableFile(atPath: $0) }
    }
}
