import Foundation
import Logging
@testable import UnderstudyQEMU

/// The test guest: the Debian cloud kernel and a busybox initramfs running `counter.c`, built
/// with the scripts in Deploy/guest (which fetch the kernel once into a cache).
enum TestGuest {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let cache = ProcessInfo.processInfo.environment["UNDERSTUDY_GUEST_DIR"] ?? "/var/cache/understudy/guest"

    /// Builds (or reuses) the initramfs; returns kernel and initrd paths.
    static let image: (kernel: String, initrd: String) = {
        let initrd = "\(cache)/initramfs-counter.cpio.gz"
        let build = Process()
        build.executableURL = URL(fileURLWithPath: "/bin/bash")
        build.arguments = [repository.appendingPathComponent("Deploy/guest/build-initramfs.sh").path, initrd,
                           repository.appendingPathComponent("Deploy/guest/counter.c").path]
        build.standardOutput = FileHandle.nullDevice
        try! build.run()
        build.waitUntilExit()
        precondition(build.terminationStatus == 0, "building the test guest failed; run Deploy/install.sh")
        return ("\(cache)/vmlinuz", initrd)
    }()

    /// A VM description for the counter guest in a fresh run directory.
    static func description(id: String = "t\(UUID().uuidString.prefix(8).lowercased())", memoryMiB: UInt64 = 128,
                            dirtyPagesPerSecond: Int = 0, extraCommandLine: String = "") -> VMDescription {
        VMDescription(id: id, memoryBytes: memoryMiB << 20, accelerator: .tcg, kernel: image.kernel, initrd: image.initrd,
                      commandLine: "console=ttyS0 understudy.dirty_pages_per_sec=\(dirtyPagesPerSecond) \(extraCommandLine)",
                      runDirectory: FileManager.default.temporaryDirectory.appendingPathComponent("understudy-vm-\(id)").path)
    }

    /// The last COUNTER value in a serial log, nil when there is none yet.
    static func lastCounter(in log: String) -> UInt64? {
        guard let text = try? String(contentsOfFile: log, encoding: .utf8) else { return nil }
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).reversed() where line.hasPrefix("COUNTER ") {
            if let value = UInt64(line.dropFirst(8)) { return value }
        }
        return nil
    }

    /// Waits until the serial log shows a counter (the guest's program runs).
    static func waitForCounter(in log: String, above minimum: UInt64 = 0, timeout: Duration = .seconds(60)) -> UInt64? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let value = lastCounter(in: log), value > minimum { return value }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return nil
    }

    static var preloadLibrary: String { productsDirectory().appendingPathComponent("libUnderstudyPreload.so").path }

    static var quietLogger: Logger {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return logger
    }
}
