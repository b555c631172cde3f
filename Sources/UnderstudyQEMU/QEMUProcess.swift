import Foundation
import Logging

/// A running qemu-system-x86_64 for one VM, with its QMP connection.
///
/// Guest RAM is a shared file (`memory-backend-file,share=on`) so the agent reads it directly;
/// QEMU is started with the preload library so dirty tracking can be armed inside it. An
/// unexpected exit is noticed at once (the termination handler) and reported through `onExit`.
public final class QEMUProcess: @unchecked Sendable {
    public enum Mode: Sendable {
        /// Boot the guest (primary).
        case boot
        /// Wait for device state (`-incoming defer`), RAM already in `ramFile` (activation on the backup).
        case incoming
    }

    public let description: VMDescription
    public let ramFile: String
    public let qmp: QMPClient
    /// The preload library's pause channel; nil when QEMU runs without the library.
    private let pauseChannel: PauseChannel?
    private let pauseBoost: RealtimeBoost
    /// Every checkpoint's device save, encoded once (see `QMPClient.Command`).
    private let deviceStateSave: QMPClient.Command
    private let process: Process
    private let lock = NSLock()
    private var stopping = false

    /// Starts QEMU and connects to QMP.
    /// - Parameters:
    ///   - ramFile: the guest RAM file QEMU maps (must exist with the VM's memory size for `.incoming`).
    ///   - preloadLibrary: path of libUnderstudyPreload.so, or nil to run without dirty tracking.
    ///   - extraArguments: devices added by other layers: the network (the output gate's stream) and
    ///     the disk (served by the agent over NBD, so that every write is seen), which is why the
    ///     disk image itself is never handed to QEMU.
    ///   - onExit: called once if QEMU exits while not being stopped, with its status and log tail.
    public init(description: VMDescription, ramFile: String, mode: Mode, preloadLibrary: String?, extraArguments: [String] = [],
                logger: Logger, onExit: @escaping @Sendable (QEMUError) -> Void) throws(QEMUError) {
        try description.validate()
        deviceStateSave = try Self.save(to: description.deviceStateFile)
        guard let binary = QEMUProcess.find(description.qemuBinary) else {
            throw .missing("\(description.qemuBinary) not found; install Debian's qemu-system-x86 (Deploy/install.sh does)")
        }
        do {
            try FileManager.default.createDirectory(atPath: description.runDirectory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw .io("cannot create \(description.runDirectory): \(error.localizedDescription)")
        }
        for stale in [description.qmpSocket, description.preloadSocket] { unlink(stale) }
        // QEMU creates the device-state file by name, following links: only inside this user's
        // own directory, and never with a save an earlier QEMU of this VM left.
        try PrivateDirectory(path: description.privateDirectory).discard(VMDescription.deviceStateFileName)
        self.description = description
        self.ramFile = ramFile
        pauseBoost = RealtimeBoost(priority: description.pausePriority, logger: logger)
        let accelerator = description.resolvedAccelerator
        var arguments = [
            "-name", description.id,
            "-accel", accelerator.rawValue,
            "-machine", description.machineOption,
            "-object", "memory-backend-file,id=ram,size=\(description.memoryBytes),share=on,mem-path=\(ramFile)",
            "-m", "\(description.memoryBytes >> 20)M",
            "-smp", "\(description.vcpus)",
            "-nodefaults", "-no-user-config", "-vga", "none", "-display", "none", "-monitor", "none",
            "-serial", "file:\(description.serialLog)",
            "-qmp", "unix:\(description.qmpSocket),server=on,wait=off",
        ]
        if let kernel = description.kernel {
            arguments += ["-kernel", kernel, "-append", description.commandLine]
            if let initrd = description.initrd { arguments += ["-initrd", initrd] }
        }
        arguments += description.platformArguments
        if mode == .incoming {
            // The saved device state has no configuration section (xen-save-devices-state).
            arguments += ["-incoming", "defer", "-global", "migration.send-configuration=off"]
        }
        arguments += extraArguments

        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        if let preloadLibrary {
            environment["LD_PRELOAD"] = preloadLibrary
            environment["UNDERSTUDY_PRELOAD_SOCKET"] = description.preloadSocket
        }
        process.environment = environment
        _ = FileManager.default.createFile(atPath: description.qemuLog, contents: nil, attributes: [.posixPermissions: 0o600])
        let log = FileHandle(forWritingAtPath: description.qemuLog)
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        self.process = process
        let logPath = description.qemuLog
        logger.info("starting QEMU", metadata: ["vm": "\(description.id)", "accelerator": "\(accelerator)",
                                                "memory-mib": "\(description.memoryBytes >> 20)", "mode": "\(mode)"])
        do {
            try process.run()
        } catch {
            rmdir(description.privateDirectory)
            throw .missing("cannot start \(binary): \(error.localizedDescription)")
        }
        do throws(QEMUError) {
            qmp = try QMPClient(socketPath: description.qmpSocket)
        } catch {
            let exited = !process.isRunning
            Self.abandon(process)
            rmdir(description.privateDirectory)
            throw exited ? .exited(status: process.terminationStatus, log: QEMUProcess.tail(of: logPath)) : error
        }
        do throws(QEMUError) {
            pauseChannel = preloadLibrary == nil ? nil : try PauseChannel(controlSocket: description.preloadSocket,
                                                                          deviceStateFile: description.deviceStateFile)
        } catch {
            Self.abandon(process)
            rmdir(description.privateDirectory)
            throw error
        }
        // For operators and tests that must find QEMU after the agent itself died.
        try? "\(process.processIdentifier)".write(toFile: description.pidFile, atomically: true, encoding: .utf8)
        process.terminationHandler = { [weak self] finished in
            guard let self, !self.isStopping else { return }
            let status = finished.terminationStatus
            logger.critical("QEMU exited unexpectedly", metadata: ["vm": "\(description.id)", "status": "\(status)"])
            onExit(.exited(status: status, log: QEMUProcess.tail(of: logPath)))
        }
    }

    public var pid: Int32 { process.processIdentifier }

    /// Ends a QEMU that never got as far as loading or running a guest. SIGKILL, not SIGTERM: a
    /// QEMU started from a thread of the agent's cooperative pool inherits that thread's signal
    /// mask, which blocks SIGTERM, and waiting for it to exit then hung the takeover for good.
    private static func abandon(_ process: Process) {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    private var isStopping: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopping
    }

    /// Stops QEMU (quit over QMP, then SIGKILL if it lingers) and removes its sockets and device
    /// state (and the private directory, unless guest RAM is still in it).
    public func stop() {
        lock.lock()
        stopping = true
        lock.unlock()
        if process.isRunning {
            _ = try? qmp.execute("quit")
            let deadline = Date(timeIntervalSinceNow: 3)
            while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        for path in [description.qmpSocket, description.preloadSocket, description.pidFile, description.deviceStateFile] { unlink(path) }
        rmdir(description.privateDirectory)
    }

    /// What runs while the VM is stopped for a device-state save (see `saveDeviceState`): its
    /// argument lets QEMU start serialising the devices.
    public typealias WhilePaused = (_ devicesMaySave: () throws -> Void) throws -> Void

    /// A checkpoint's device state, and how long the guest was stopped for it.
    public struct DeviceStateSave {
        public let bytes: [UInt8]
        /// From QEMU's STOP to its RESUME event; nil when the VM stays stopped (the caller then
        /// times the whole exchange).
        public let pause: Duration?
        /// The QEMU-side phases of the pause (`stop`, `wake`, `deviceSave`, `resume`, `total`),
        /// known through the pause channel; zero without it or when the VM stays stopped.
        public var breakdown = PauseBreakdown()
    }

    /// Stops the VM, saves all its device and CPU state (no RAM) and resumes it if `resume`.
    /// `whilePaused` runs while the VM is stopped. QEMU serialises the devices once it calls its
    /// argument (`devicesMaySave`), or returned: collect the written pages before, copy them after. The
    /// collection changes QEMU's page tables, which interrupts every core running QEMU's threads
    /// (see preload.c); the copy only reads guest memory, in parallel with QEMU.
    ///
    /// With the preload library this is one QMP command sent while the guest runs, so QEMU has
    /// parsed it (one byte per main-loop turn) before it stops the VM; the library holds the
    /// save's start until `devicesMaySave`, and its end until `whilePaused` returned (see preload.c).
    /// After each such save the next one is prepared (`QMPClient.prepare`): it then starts after
    /// one byte, not after the ~0.7 ms QEMU takes to read the whole command, which every
    /// output-triggered epoch waited for. If `whilePaused` throws, the save is failed on purpose
    /// and QEMU resumes the VM anyway.
    /// Without the library: `saveStepwise`.
    /// The agent's thread and QEMU's main thread (whose id is QEMU's pid) run the exchange under
    /// real-time priority (`VMDescription.pausePriority`).
    public func saveDeviceState(resume: Bool, whilePaused: WhilePaused) throws -> DeviceStateSave {
        try withPausePriority { try saveDeviceStateNow(resume: resume, whilePaused: whilePaused) }
    }

    /// Runs `body` with the calling thread and QEMU's main thread at the pause's priority.
    public func withPausePriority<T>(_ body: () throws -> T) rethrows -> T {
        try pauseBoost.during(threads: [pid], body)
    }

    /// Puts the calling thread at the pause's priority until the hold ends (on this thread);
    /// `withPausePriority` inside it leaves the thread there.
    func holdPausePriority() -> RealtimeBoost.Hold {
        pauseBoost.begin(threads: [])
    }

    private func saveDeviceStateNow(resume: Bool, whilePaused: WhilePaused) throws -> DeviceStateSave {
        let pause: Duration?
        var breakdown = PauseBreakdown()
        if let channel = pauseChannel {
            (pause, breakdown) = try saveThroughPauseChannel(channel, resume: resume, whilePaused: whilePaused)
        } else {
            pause = try saveStepwise(to: description.deviceStateFile, resume: resume, whilePaused: whilePaused)
        }
        guard let data = FileManager.default.contents(atPath: description.deviceStateFile) else {
            throw QEMUError.io("cannot read the saved device state \(description.deviceStateFile)")
        }
        return DeviceStateSave(bytes: [UInt8](data), pause: pause, breakdown: breakdown)
    }

    private func saveThroughPauseChannel(_ channel: PauseChannel, resume: Bool,
                                         whilePaused: WhilePaused) throws -> (Duration?, PauseBreakdown) {
        // A message left unread by an exchange that failed early belongs to no save of this one.
        channel.discardUnread()
        var stopped: PauseChannel.Message?
        var woke: UInt64 = 0
        var savingFrom: UInt64 = 0
        var answered: UInt64 = 0
        let replies = try withoutActuallyEscaping(whilePaused) { whilePaused in
            try qmp.execute(resume ? [deviceStateSave] : [QMPClient.Command("stop"), deviceStateSave],
                            watching: .init(fd: channel.fd) {
                let message = try channel.stopped()
                woke = HostClock.monotonic()
                stopped = message
                // The library waits for one answer before the device save and one after it, in that
                // order; a failure answers the one it waits for.
                func devicesMaySave() throws {
                    guard savingFrom == 0 else { return }
                    try channel.release(message.sequence, succeeded: true)
                    savingFrom = HostClock.monotonic()
                }
                do {
                    try whilePaused(devicesMaySave)
                    try devicesMaySave()
                } catch {
                    try channel.release(message.sequence, succeeded: false)
                    throw error
                }
                try channel.release(message.sequence, succeeded: true)
                answered = HostClock.monotonic()
            })
        }
        guard let stopped else {
            throw QEMUError.tracking("QEMU saved the device state without stopping at the pause channel, so no pages were copied "
                                     + "(\(description.deviceStateFile) not opened through the preload library's open64)")
        }
        guard resume else { return (nil, PauseBreakdown()) }
        // The next checkpoint's save waits in QEMU but for its last byte, so that it starts
        // without QEMU first reading the command (see `QMPClient`). A failed write means QEMU is
        // gone, which the next command reports; this checkpoint is whole either way.
        try? qmp.prepare(deviceStateSave)
        guard let pause = QMPClient.pause(in: replies.events) else { return (nil, PauseBreakdown()) }
        var breakdown = PauseBreakdown()
        breakdown.total = pause
        breakdown.wake = HostClock.span(from: stopped.at, to: woke)
        if let stop = replies.events.first(where: { $0.name == "STOP" }) {
            breakdown.stop = HostClock.span(from: HostClock.monotonic(fromRealtime: stop.timestamp), to: stopped.at)
        }
        let saved = channel.saved(stopped.sequence)
        if let saved { breakdown.deviceSave = HostClock.span(from: savingFrom, to: saved.at) }
        if let resumed = replies.events.last(where: { $0.name == "RESUME" }) {
            breakdown.resume = HostClock.span(from: max(answered, saved?.at ?? 0), to: HostClock.monotonic(fromRealtime: resumed.timestamp))
        }
        return (pause, breakdown)
    }

    /// A capture without the preload library: stop and save sent together, `whilePaused` once stop
    /// returned, then cont if `resume`; every command is parsed with the guest stopped. Returns the
    /// pause (QEMU's STOP to RESUME) when `resume`. Public for the benchmark's baseline, which saves
    /// to another `file` than the pause channel's.
    public func saveStepwise(to file: String, resume: Bool, whilePaused: WhilePaused) throws -> Duration? {
        var events = try qmp.execute([QMPClient.Command("stop"), Self.save(to: file)]) { done in
            if done == 0 { try whilePaused {} }
        }.events
        guard resume else { return nil }
        events += try qmp.execute([QMPClient.Command("cont")]).events
        return QMPClient.pause(in: events)
    }

    private static func save(to file: String) throws(QEMUError) -> QMPClient.Command {
        try QMPClient.Command("xen-save-devices-state", arguments: ["filename": file, "live": false])
    }

    static func find(_ binary: String) -> String? {
        if binary.contains("/") { return FileManager.default.isExecutableFile(atPath: binary) ? binary : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(binary)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// The last lines QEMU printed, for error messages.
    static func tail(of path: String, lines: Int = 5) -> String {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return "" }
        return text.split(separator: "\n").suffix(lines).joined(separator: " | ")
    }
}
