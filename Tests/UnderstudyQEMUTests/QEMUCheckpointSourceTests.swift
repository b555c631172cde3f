import Foundation
import Synchronization
import Testing
import UnderstudyHarness
import UnderstudyProtocol
import UnderstudySystem
@testable import UnderstudyQEMU
import UnderstudyTestTags

@Suite("QEMU checkpoint source", .serialized, .tags(.vm), .skippedInQuickLoop)
struct QEMUCheckpointSourceTests {
    /// With the preload library the pause is QEMU's own inside one save (its pause channel);
    /// without it, QMP stop / save / cont.
    @Test(arguments: [(DirtyTrackingPreference.pagemap, true), (.compare, true), (.compare, false)])
    func capturesPagesAndDeviceStateAndKeepsTheGuestRunning(tracking: DirtyTrackingPreference, preload: Bool) throws {
        if tracking == .pagemap && !PagemapDirtyTracker.kernelSupportsPagemapScan { return }
        let description = TestGuest.description(dirtyPagesPerSecond: 2000)
        let source = try QEMUCheckpointSource(description: description, preloadLibrary: preload ? TestGuest.preloadLibrary : nil,
                                              tracking: tracking, logger: TestGuest.quietLogger) { _ in }
        defer {
            source.shutdown()
            try? FileManager.default.removeItem(atPath: description.runDirectory)
        }
        #expect(source.trackingMethod.rawValue == tracking.rawValue)
        let before = try #require(TestGuest.waitForCounter(in: description.serialLog))
        try source.startTracking()
        var pauses: [Duration] = []
        var dirty = 0
        for _ in 0..<20 {
            Thread.sleep(forTimeInterval: 0.025)
            let captured = try source.capture(epoch: 1, resume: true)
            pauses.append(captured.pause)
            dirty += captured.pageIndices.count
            #expect(captured.deviceState.count > 1000, "device state is saved with each capture")
            #expect(captured.pageIndices == captured.pageIndices.sorted())
        }
        #expect(dirty > 0, "a guest dirtying 2000 pages/s writes pages between checkpoints")
        #expect(TestGuest.waitForCounter(in: description.serialLog, above: before) != nil, "the guest keeps running")
        let sorted = pauses.map(\.milliseconds).sorted()
        print("\(tracking), preload \(preload): pause p50 \(sorted[sorted.count / 2]) ms, max \(sorted.last!) ms, \(dirty) dirty pages in 20 checkpoints")
    }

    /// The checkpoint loop keeps the pause's priority from the capture until its checkpoint is
    /// queued (`withCheckpointPriority`): given back at the end of every capture, the host's
    /// scheduler handed its core to another task at once in most checkpoints under pgbench, and
    /// the encoding, so the reply's release, waited.
    @Test func aCheckpointKeepsThePausePriorityAfterItsCaptureUntilLowered() throws {
        guard geteuid() == 0, PagemapDirtyTracker.kernelSupportsPagemapScan else { return }  // CAP_SYS_NICE, the pause channel
        let description = TestGuest.description(dirtyPagesPerSecond: 2000)
        let source = try QEMUCheckpointSource(description: description, preloadLibrary: TestGuest.preloadLibrary, tracking: .pagemap,
                                              logger: TestGuest.quietLogger) { _ in }
        defer {
            source.shutdown()
            try? FileManager.default.removeItem(atPath: description.runDirectory)
        }
        _ = try #require(TestGuest.waitForCounter(in: description.serialLog))
        try source.startTracking()
        let own = sched_getscheduler(0)
        #expect(own != SCHED_FIFO)
        let (afterCapture, afterLower) = try source.withCheckpointPriority { lower in
            _ = try source.capture(epoch: 1, resume: true)
            let afterCapture = sched_getscheduler(0)
            lower()
            return (afterCapture, sched_getscheduler(0))
        }
        #expect(afterCapture == SCHED_FIFO, "the pause's priority outlasts the capture")
        #expect(afterLower == own && sched_getscheduler(0) == own, "lowering, and the end, give the thread its own back")
        _ = try source.capture(epoch: 2, resume: true)
        #expect(sched_getscheduler(0) == own, "a capture alone gives it back at its end")
    }

    /// Pre-copy: a dirty set copied in rounds before the pause, and the rest in the pause, is
    /// exactly the guest's memory at the pause: applied to a copy of memory taken at the previous
    /// (paused) checkpoint, it gives memory as the stopped guest holds it. Once with rounds while
    /// the guest runs (50 k pages/s), once with a guest writing as fast as TCG lets it over 256 MiB
    /// and running rounds limited to 1 ms of copying, so that the rounds hold it in slices (when
    /// rounds hold is decided in `PreCopyRoundsTests`).
    @Test(arguments: [PreCopyCase.running, .held])
    func aPreCopiedCheckpointIsExactlyTheGuestAtThePause(_ kind: PreCopyCase) throws {
        if !PagemapDirtyTracker.kernelSupportsPagemapScan { return }
        let description = TestGuest.description(memoryMiB: kind.memoryMiB, dirtyPagesPerSecond: kind.dirtyPagesPerSecond,
                                                extraCommandLine: kind.commandLine)
        let source = try QEMUCheckpointSource(description: description, preloadLibrary: TestGuest.preloadLibrary, tracking: .pagemap,
                                              preCopy: kind.rounds, logger: TestGuest.quietLogger) { _ in }
        defer {
            source.shutdown()
            try? FileManager.default.removeItem(atPath: description.runDirectory)
        }
        _ = try #require(TestGuest.waitForCounter(in: description.serialLog))
        try source.startTracking()
        _ = try source.capture(epoch: 1, resume: false)
        var replica = Array(source.memory)
        try source.resume()
        var preCopied = 0
        var (holds, heldRounds, paused) = (0, 0, 0)
        let before = TestGuest.lastCounter(in: description.serialLog) ?? 0
        for epoch in UInt64(2)...5 {
            Thread.sleep(forTimeInterval: 0.1)
            let checkpoint = try source.capture(epoch: epoch, resume: false)
            preCopied += checkpoint.pauseBreakdown.preCopiedPages
            holds += checkpoint.pauseBreakdown.holds
            heldRounds += checkpoint.pauseBreakdown.heldRounds
            paused += checkpoint.pauseBreakdown.pages
            #expect(checkpoint.pageIndices == checkpoint.pageIndices.sorted() && Set(checkpoint.pageIndices).count == checkpoint.pageIndices.count)
            #expect(Self.apply(checkpoint, to: &replica, isNow: source.memory), "checkpoint \(epoch) (\(checkpoint.pageIndices.count) pages, \(checkpoint.pauseBreakdown.preCopiedPages) pre-copied in \(checkpoint.pauseBreakdown.preCopyRounds) rounds) is the paused guest")
            try source.resume()
        }
        #expect(preCopied > 0, "a guest writing \(kind.dirtyPagesPerSecond) pages/s leaves more than 8 pages to pre-copy")
        print("\(kind): \(preCopied) pages pre-copied in \(heldRounds) held rounds with \(holds) holds, \(paused) in the pauses")
        switch kind {
        case .running:
            #expect(holds == 0, "a guest slow enough for running rounds is never held")
        case .held:
            #expect(heldRounds > 0 && holds >= heldRounds, "rounds too long to copy with the guest running hold it")
            #expect(paused < preCopied, "the held rounds leave the pauses less than they copied (\(paused) vs \(preCopied) pages)")
        }
        #expect(TestGuest.waitForCounter(in: description.serialLog, above: before) != nil, "the guest runs on after its holds")
    }

    /// Copies `checkpoint`'s pages into `replica` (guest memory as of an earlier checkpoint), and
    /// tells whether it then equals `memory`, the paused guest's.
    static func apply(_ checkpoint: CapturedCheckpoint, to replica: inout [UInt8], isNow memory: UnsafeRawBufferPointer) -> Bool {
        let pageSize = checkpoint.pageSize
        replica.withUnsafeMutableBytes { replica in
            for (position, index) in checkpoint.pageIndices.enumerated() {
                UnsafeMutableRawBufferPointer(rebasing: replica[(Int(index) * pageSize)..<((Int(index) + 1) * pageSize)])
                    .copyMemory(from: UnsafeRawBufferPointer(checkpoint.page(at: position)))
            }
        }
        return replica.withUnsafeBytes { memcmp($0.baseAddress!, memory.baseAddress!, $0.count) == 0 }
    }

    enum PreCopyCase: String, CustomTestStringConvertible {
        case running, held
        var testDescription: String { rawValue }
        var dirtyPagesPerSecond: Int { self == .running ? 50_000 : 1_000_000 }
        /// The held guest rewrites 256 MiB: more than it writes between two captures, so that
        /// its rate is not hidden by rewriting the same pages.
        var memoryMiB: UInt64 { self == .running ? 128 : 384 }
        var commandLine: String { self == .running ? "" : "understudy.dirty_mib=256" }
        var rounds: PreCopyRounds {
            // Running rounds are never declined for their length here (a slow first copy on a busy
            // host would make them look too long): this test is about what they copy.
            self == .running ? PreCopyRounds(stopPages: 8, maxRounds: 3, longestRound: .seconds(1))
                : PreCopyRounds(stopPages: 256, maxRounds: 8, longestRound: .milliseconds(1), holdSlice: .milliseconds(4))
        }
    }

    /// The breakdown's phases come from the pause channel: QEMU's stop, the device save, the resume.
    @Test func thePauseIsBrokenDownIntoItsPhases() throws {
        if !PagemapDirtyTracker.kernelSupportsPagemapScan { return }
        try Self.withGuest { source, _ in
            Thread.sleep(forTimeInterval: 0.05)
            let checkpoint = try source.capture(epoch: 1, resume: true)
            let phases = checkpoint.pauseBreakdown
            #expect(phases.total == checkpoint.pause && phases.pages == checkpoint.pageIndices.count)
            #expect(phases.deviceSave > .zero && phases.collect > .zero, "\(phases)")
            #expect(phases.stop + phases.wake + phases.collect + phases.copy + phases.boundary <= phases.total + .milliseconds(1), "\(phases)")
        }
    }

    /// Each save leaves the next one prepared in QEMU but for its last byte (`QMPClient.prepare`).
    /// Any other command withdraws it first, and QEMU must refuse what was withdrawn: the guest
    /// keeps running and no device state is written. Saves, prepared or not, and the final
    /// capture (stop and save, guest left paused) all still work around such commands.
    @Test func aPreparedSaveRunsOnlyAsTheNextSave() throws {
        if !PagemapDirtyTracker.kernelSupportsPagemapScan { return }
        try Self.withGuest { source, description in
            _ = try source.capture(epoch: 1, resume: true)
            try FileManager.default.removeItem(atPath: description.deviceStateFile)
            #expect(Self.running(source), "query-status withdrew the prepared save")
            #expect(!FileManager.default.fileExists(atPath: description.deviceStateFile), "QEMU ran the withdrawn save")

            for epoch in UInt64(2)...4 {
                let captured = try source.capture(epoch: epoch, resume: true)
                #expect(captured.deviceState.count > 1000 && captured.pauseBreakdown.total > .zero)
            }
            _ = try source.capture(epoch: 5, resume: false)
            #expect(!Self.running(source), "the final capture leaves the guest paused")
            try source.resume()
            #expect(Self.running(source))
            let before = TestGuest.lastCounter(in: description.serialLog) ?? 0
            #expect(TestGuest.waitForCounter(in: description.serialLog, above: before) != nil, "the guest runs after all of it")
        }
    }

    /// The replication-lag throttle's hold (`hold(for:)`) stops a real guest for the time asked,
    /// withdrawing the save a capture left prepared, and lets it run again; captures still work.
    @Test func aHoldStopsTheGuestForItsDurationAndLetsItRunAgain() throws {
        if !PagemapDirtyTracker.kernelSupportsPagemapScan { return }
        try Self.withGuest { source, description in
            _ = try source.capture(epoch: 1, resume: true)
            let start = ContinuousClock.now
            let finished = DispatchSemaphore(value: 0)
            let outcome = Mutex<Result<Void, any Error>?>(nil)
            Thread {
                let held = Result { try source.hold(for: .seconds(1.5)) }
                outcome.withLock { $0 = held }
                finished.signal()
            }.start()
            Thread.sleep(forTimeInterval: 0.5)
            #expect(!Self.running(source), "the guest is stopped during the hold")
            let during = TestGuest.lastCounter(in: description.serialLog) ?? 0
            Thread.sleep(forTimeInterval: 0.5)
            #expect(TestGuest.lastCounter(in: description.serialLog) ?? 0 == during, "the held guest counted on")
            #expect(finished.wait(timeout: .now() + 30) == .success)
            try #require(outcome.withLock { $0 }).get()
            #expect(ContinuousClock.now - start >= .seconds(1.5))
            #expect(Self.running(source), "the guest runs again after the hold")
            #expect(TestGuest.waitForCounter(in: description.serialLog, above: during) != nil, "the guest counts again")
            let captured = try source.capture(epoch: 2, resume: true)
            #expect(captured.deviceState.count > 1000)
        }
    }

    /// The agent failing while the VM is stopped, before or after it let QEMU save the devices,
    /// fails the save, and QEMU resumes the guest anyway. An agent answering only after the library
    /// stopped waiting cannot release a later pause: the next capture is still whole.
    @Test func aFailedOrLateAgentNeverLeavesTheGuestPausedNorReleasesALaterPause() throws {
        if !PagemapDirtyTracker.kernelSupportsPagemapScan { return }
        try Self.withGuest(tracking: false) { source, _ in
            struct Refused: Error {}
            #expect(throws: Refused.self) { _ = try source.qemu.saveDeviceState(resume: true) { _ in throw Refused() } }
            #expect(Self.running(source), "QEMU resumed the guest after the save failed before the device save")
            #expect(throws: Refused.self) {
                _ = try source.qemu.saveDeviceState(resume: true) { devicesMaySave in
                    try devicesMaySave()
                    throw Refused()
                }
            }
            #expect(Self.running(source), "QEMU resumed the guest after the save failed after the device save")

            // The library waits 10 s (preload.c); this agent answers after 11, before the device save.
            let late = #expect(throws: QEMUError.self) {
                _ = try source.qemu.saveDeviceState(resume: true) { _ in Thread.sleep(forTimeInterval: 11) }
            }
            #expect("\(late!)".contains("Input/output error"), "\(late!)")
            #expect(Self.running(source), "QEMU resumed the guest when the agent did not answer")

            let start = ContinuousClock.now
            var copied = false
            let saved = try source.qemu.saveDeviceState(resume: true) { devicesMaySave in
                try devicesMaySave()
                Thread.sleep(forTimeInterval: 0.2)
                copied = true
            }
            #expect(copied && saved.bytes.count > 1000)
            let pause = try #require(saved.pause)
            #expect(pause >= .milliseconds(200), "the late answer to the previous save did not cut this pause short (\(pause))")
            #expect(pause <= ContinuousClock.now - start)
            #expect(Self.running(source))
        }
    }

    /// QEMU serialises the devices only once the agent has collected the written pages (the
    /// collection interrupts every core running QEMU's threads; see preload.c), and does so while
    /// the agent copies them: its file is empty until then, and whole before the agent returns.
    @Test func qemuSavesTheDevicesAfterTheCollectionWhileTheAgentCopies() throws {
        if !PagemapDirtyTracker.kernelSupportsPagemapScan { return }
        try Self.withGuest { source, description in
            func written() -> Int {
                ((try? FileManager.default.attributesOfItem(atPath: description.deviceStateFile)[.size]) as? NSNumber)?.intValue ?? -1
            }
            var beforeCollected = -1
            var whileCopying = -1
            let saved = try source.qemu.saveDeviceState(resume: true) { devicesMaySave in
                _ = try source.tracker.collect()
                Thread.sleep(forTimeInterval: 0.3)
                beforeCollected = written()
                try devicesMaySave()
                let deadline = ContinuousClock.now + .seconds(5)
                repeat {
                    whileCopying = written()
                    if whileCopying == 0 { Thread.sleep(forTimeInterval: 0.01) }
                } while whileCopying == 0 && ContinuousClock.now < deadline
            }
            #expect(beforeCollected == 0, "QEMU wrote \(beforeCollected) bytes of device state before the collection ended")
            #expect(whileCopying == saved.bytes.count, "the device state was written while the agent still ran")
            #expect(saved.bytes.count > 1000)
            #expect(Self.running(source))
        }
    }

    /// A checkpoint soon after the last collection of a guest writing slowly leaves out the look
    /// before the stop (`PreStopLook`, its window widened here so that a busy host cannot miss
    /// it), and is still exactly the guest at the pause: the pause's collection finds everything.
    /// Past the window the look is back.
    @Test func aCheckpointSoonAfterTheLastLeavesOutTheLookAndIsStillExact() throws {
        if !PagemapDirtyTracker.kernelSupportsPagemapScan { return }
        let window = Duration.milliseconds(500)
        try Self.withGuest(preStopLook: PreStopLook(window: window, mostPages: 4096)) { source, _ in
            _ = try source.capture(epoch: 1, resume: false)
            var replica = Array(source.memory)
            try source.resume()
            var skipped = 0
            for epoch in UInt64(2)...5 {
                Thread.sleep(forTimeInterval: 0.002)
                let checkpoint = try source.capture(epoch: epoch, resume: false)
                // The second follows the copy of all guest RAM into `replica`, which can take long on a busy host.
                if epoch > 2 { skipped += checkpoint.pauseBreakdown.skippedLooks }
                #expect(Self.apply(checkpoint, to: &replica, isNow: source.memory), "checkpoint \(epoch) (\(checkpoint.pageIndices.count) pages, look left out: \(checkpoint.pauseBreakdown.skippedLooks)) is the paused guest")
                try source.resume()
            }
            #expect(skipped == 3, "a guest writing 2000 pages/s, 2 ms after each collection")
            Thread.sleep(forTimeInterval: (window + .milliseconds(100)).seconds)
            #expect(try source.capture(epoch: 6, resume: true).pauseBreakdown.skippedLooks == 0, "past the window")
        }
    }

    /// A pause collects beside QEMU's device save only when the last look before the stop found
    /// few page tables to re-arm; many, or no look at all (no pre-copy, comparison), and QEMU waits.
    @Test func thePauseCollectsBesideTheDeviceSaveOnlyAFewPageTables() {
        let few = QEMUCheckpointSource.pageTablesCollectedBesideDeviceSave
        #expect(!QEMUCheckpointSource.collectsBeforeDeviceSave(pending: PendingWrites(pages: 0, pageTables: 0)))
        #expect(!QEMUCheckpointSource.collectsBeforeDeviceSave(pending: PendingWrites(pages: 5_000, pageTables: few)),
                "many pages in a few tables cost a few flushes")
        #expect(QEMUCheckpointSource.collectsBeforeDeviceSave(pending: PendingWrites(pages: few + 1, pageTables: few + 1)))
        #expect(QEMUCheckpointSource.collectsBeforeDeviceSave(pending: nil))
    }

    /// A booted test guest writing 2000 pages/s, its source with the preload library, pagemap
    /// tracking (armed unless `tracking` is false) and `preStopLook`; shut down and removed after `body`.
    private static func withGuest(tracking: Bool = true, preStopLook: PreStopLook = PreStopLook(),
                                  _ body: (QEMUCheckpointSource, VMDescription) throws -> Void) throws {
        let description = TestGuest.description(dirtyPagesPerSecond: 2000)
        let source = try QEMUCheckpointSource(description: description, preloadLibrary: TestGuest.preloadLibrary, tracking: .pagemap,
                                              preStopLook: preStopLook, logger: TestGuest.quietLogger) { _ in }
        defer {
            source.shutdown()
            try? FileManager.default.removeItem(atPath: description.runDirectory)
        }
        _ = try #require(TestGuest.waitForCounter(in: description.serialLog))
        if tracking { try source.startTracking() }
        try body(source, description)
    }

    private static func running(_ source: QEMUCheckpointSource) -> Bool {
        ((try? source.qemu.qmp.execute("query-status")) as? [String: Any])?["status"] as? String == "running"
    }

    @Test func missingQEMUBinaryIsReportedClearly() throws {
        var description = TestGuest.description()
        description.qemuBinary = "/nonexistent/qemu-system-x86_64"
        let error = #expect(throws: QEMUError.self) {
            _ = try QEMUCheckpointSource(description: description, preloadLibrary: nil, tracking: .compare,
                                         logger: TestGuest.quietLogger) { _ in }
        }
        #expect("\(error!)".contains("not found"), "\(error!)")
        #expect(!FileManager.default.fileExists(atPath: description.ramFile), "a failed start leaves no RAM file behind")
    }

    /// `vm.qemu` may name a wrapper script that execs QEMU (to add arguments, a namespace, ...).
    /// The preload library is then loaded into the wrapper first: QEMU must still own the
    /// control socket after the exec, and a helper QEMU starts (the `exec:` migration's `cat`)
    /// must not take it.
    @Test func aWrapperThatExecsQEMUKeepsTrackingAndThePauseChannel() throws {
        if !PagemapDirtyTracker.kernelSupportsPagemapScan { return }
        var description = TestGuest.description(dirtyPagesPerSecond: 2000)
        try FileManager.default.createDirectory(atPath: description.runDirectory, withIntermediateDirectories: true)
        let wrapper = "\(description.runDirectory)/qemu-wrapper"
        try "#!/bin/sh\nexec qemu-system-x86_64 \"$@\"\n".write(toFile: wrapper, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: wrapper)
        description.qemuBinary = wrapper
        let source = try QEMUCheckpointSource(description: description, preloadLibrary: TestGuest.preloadLibrary, tracking: .pagemap,
                                              logger: TestGuest.quietLogger) { _ in }
        defer {
            source.shutdown()
            try? FileManager.default.removeItem(atPath: description.runDirectory)
        }
        _ = try #require(TestGuest.waitForCounter(in: description.serialLog))
        try source.startTracking()
        for epoch in UInt64(1)...3 {
            Thread.sleep(forTimeInterval: 0.05)
            let captured = try source.capture(epoch: epoch, resume: true)
            #expect(!captured.pageIndices.isEmpty, "the counter guest writes memory between checkpoints")
            #expect(captured.pauseBreakdown.deviceSave > .zero, "the pause went through the pause channel")
        }
    }

    /// A start that fails once QEMU runs (here the preload library cannot be loaded, so its pause
    /// channel never answers) ends that QEMU even when the starting thread blocks SIGTERM, as the
    /// agent's threads do: they inherit the mask of Swift's cooperative pool, and so does QEMU.
    /// Such a start used to wait for QEMU's exit forever, and the takeover with it.
    @Test func aFailedStartEndsQEMUWhenTheStartingThreadBlocksSIGTERM() throws {
        let description = TestGuest.description()
        let notALibrary = FileManager.default.temporaryDirectory.appendingPathComponent("not-a-library-\(UUID().uuidString)").path
        try Data("not an ELF file".utf8).write(to: URL(fileURLWithPath: notALibrary))
        defer {
            unlink(notALibrary)
            try? FileManager.default.removeItem(atPath: description.runDirectory)
        }
        let failure = ErrorRecorder<Error>()
        let finished = DispatchSemaphore(value: 0)
        let starter = Thread {
            var blocked = sigset_t()
            sigemptyset(&blocked)
            sigaddset(&blocked, SIGTERM)
            pthread_sigmask(SIG_BLOCK, &blocked, nil)
            do {
                let source = try QEMUCheckpointSource(description: description, preloadLibrary: notALibrary, tracking: .compare,
                                                      logger: TestGuest.quietLogger) { _ in }
                source.shutdown()
            } catch {
                failure.record(error)
            }
            finished.signal()
        }
        starter.start()
        let ended = finished.wait(timeout: .now() + 30) == .success
        if !ended { _ = try? HostCommand.execute("/usr/bin/pkill", ["-KILL", "-f", "-name \(description.id) "]) }
        #expect(ended, "the failed start did not return: it waited for a QEMU that ignores SIGTERM")
        #expect(failure.error.map { "\($0)".contains("preload library") } == true, "\(String(describing: failure.error))")
        let left = try HostCommand.execute("/usr/bin/pgrep", ["-f", "-name \(description.id) "])
        #expect(left.status != 0, "the QEMU of the failed start is gone: \(left.stdout)")
    }

    @Test func qemuDyingIsNoticedAtOnce() throws {
        let description = TestGuest.description()
        let exited = ErrorRecorder<QEMUError>()
        let source = try QEMUCheckpointSource(description: description, preloadLibrary: TestGuest.preloadLibrary, tracking: .auto,
                                              logger: TestGuest.quietLogger) { error in exited.record(error) }
        defer {
            source.shutdown()
            try? FileManager.default.removeItem(atPath: description.runDirectory)
        }
        kill(source.qemu.pid, SIGKILL)
        let deadline = ContinuousClock.now + .seconds(5)
        while exited.error == nil && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.01) }
        #expect(exited.error != nil, "QEMU's death must be reported")
        #expect(throws: QEMUError.self) { _ = try source.capture(epoch: 1, resume: true) }
    }
}

