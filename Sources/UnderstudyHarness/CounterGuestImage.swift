import Foundation

/// The project's own test guest (Deploy/guest/README.md): the Debian cloud kernel that
/// Deploy/install.sh fetches into a cache, and a busybox initramfs running `counter.c` or, with
/// `understudy.run=counter-service`, the TCP counter service `counter-service.c`. The tests, the
/// benchmarks and `understudy demo` all boot it; Deploy/guest/build-initramfs.sh builds it (and
/// does nothing when its inputs did not change), so there is one recipe for the image.
public enum CounterGuestImage {
    /// The checkout this library was built from (its sources sit in Sources/UnderstudyHarness).
    public static let checkout = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// Where fetch-kernel.sh caches the kernel and where the initramfs is written:
    /// `UNDERSTUDY_GUEST_DIR`, or /var/cache/understudy/guest.
    public static var cache: String { ProcessInfo.processInfo.environment["UNDERSTUDY_GUEST_DIR"] ?? "/var/cache/understudy/guest" }

    /// The kernel fetched by Deploy/install.sh; nil when it is missing or incomplete (fetch-kernel.sh
    /// writes `kernel-release` last).
    public static var kernel: String? {
        FileManager.default.fileExists(atPath: "\(cache)/kernel-release") ? "\(cache)/vmlinuz" : nil
    }

    /// Builds (or reuses) the initramfs with the scripts in `guestDirectory` (a checkout's
    /// Deploy/guest); returns the kernel's and the initramfs's paths.
    public static func build(guestDirectory: URL) throws(HarnessError) -> (kernel: String, initrd: String) {
        let initrd = "\(cache)/initramfs-counter.cpio.gz"
        let script = guestDirectory.appendingPathComponent("build-initramfs.sh").path
        guard FileManager.default.fileExists(atPath: script) else { throw HarnessError("no \(script): the guest's build script is missing") }
        let build = Process()
        build.executableURL = URL(fileURLWithPath: "/bin/bash")
        build.arguments = [script, initrd, guestDirectory.appendingPathComponent("counter.c").path,
                           guestDirectory.appendingPathComponent("counter-service.c").path]
        let errors = Pipe()
        build.standardOutput = FileHandle.nullDevice
        build.standardError = errors
        do {
            try build.run()
        } catch {
            throw HarnessError("cannot run \(script): \(error.localizedDescription)")
        }
        let said = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        build.waitUntilExit()
        guard build.terminationStatus == 0 else {
            throw HarnessError("building the test guest failed (run ./Deploy/install.sh): "
                           + said.split(separator: "\n").suffix(3).joined(separator: " | "))
        }
        return ("\(cache)/vmlinuz", initrd)
    }
}
