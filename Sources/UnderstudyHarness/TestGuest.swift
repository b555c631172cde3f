import Foundation
import Logging
import UnderstudyQEMU

/// The test guest (`CounterGuestImage`) as the tests use it: built once per test process.
public enum TestGuest {
    /// Builds (or reuses) the initramfs; returns kernel and initrd paths.
    public static let image: (kernel: String, initrd: String) = {
        do {
            return try CounterGuestImage.build(guestDirectory: CounterGuestImage.checkout.appendingPathComponent("Deploy/guest"))
        } catch {
            fatalError("the test guest cannot be built (run ./Deploy/install.sh): \(error)")
        }
    }()

    /// A VM description for the counter guest in a fresh run directory.
    public static func description(id: String = "t\(UUID().uuidString.prefix(8).lowercased())", memoryMiB: UInt64 = 128,
                            dirtyPagesPerSecond: Int = 0, extraCommandLine: String = "") -> VMDescription {
        VMDescription(id: id, memoryBytes: memoryMiB << 20, accelerator: .tcg, kernel: image.kernel, initrd: image.initrd,
                      commandLine: "console=ttyS0 understudy.dirty_pages_per_sec=\(dirtyPagesPerSecond) \(extraCommandLine)",
                      runDirectory: FileManager.default.temporaryDirectory.appendingPathComponent("understudy-vm-\(id)").path)
    }

    /// The last COUNTER value in a serial log, nil when there is none yet.
    public static func lastCounter(in log: String) -> UInt64? { counters(in: log).last }

    /// Waits until the serial log shows a counter (the guest's program runs).
    public static func waitForCounter(in log: String, above minimum: UInt64 = 0, timeout: Duration = .seconds(60)) -> UInt64? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let value = lastCounter(in: log), value > minimum { return value }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return nil
    }

    public static var preloadLibrary: String { productsDirectory().appendingPathComponent("libUnderstudyPreload.so").path }

    public static var quietLogger: Logger { Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }) }
}

extension TestGuest {
    /// Every COUNTER value in a serial log, in order.
    public static func counters(in log: String) -> [UInt64] {
        guard let text = try? String(contentsOfFile: log, encoding: .utf8) else { return [] }
        // Only whole lines: QEMU may be writing the last one, and its first digits alone would
        // read as a much smaller counter (a kill trial once "resumed" at 27897118 of 2789711872).
        let complete = text[..<(text.lastIndex(of: "\n") ?? text.startIndex)]
        return complete.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).compactMap { line in
            line.hasPrefix("COUNTER ") ? UInt64(line.dropFirst(8)) : nil
        }
    }
}
