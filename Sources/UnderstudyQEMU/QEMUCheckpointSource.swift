import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization
import UnderstudyProtocol

/// Checkpoints of a real VM under QEMU.
///
/// `capture` is the latency-critical path and runs on the caller's dedicated thread with
/// blocking calls only: one QMP save-device-state, during which QEMU stops the VM, the written
/// pages are collected, then copied out while QEMU saves the devices, and QEMU resumes the VM
/// (`QEMUProcess.saveDeviceState`). Pages are collected only once the VM is stopped (no vCPU and
/// no device DMA writes any more), and the guest resumes only after pages and device state are
/// both copied, so they describe one instant.
public final class QEMUCheckpointSource: CheckpointSource, @unchecked Sendable {
    public let identity: VMIdentity
    public let qemu: QEMUProcess
    public let tracker: DirtyTracker
    private let ram: GuestRAM
    private let pageSize: Int

    /// Runs inside every capture once QEMU has stopped (no vCPU runs, device I/O drained), before
    /// it resumes: the disk and network layers cut their streams at the epoch boundary here.
    public typealias EpochBoundary = @Sendable (_ epoch: UInt64, _ checkpoint: CapturedCheckpoint) -> Void
    private let boundary: EpochBoundary?
    /// Runs in every capture just before QEMU is asked to stop the VM, while the guest still runs:
    /// the disk layer makes the writes so far durable, so the flush QEMU's stop does with the
    /// guest paused has only the last moments' writes left.
    private let beforeStop: (@Sendable () -> Void)?
    /// When a checkpoint's dirty set is too large to copy in a short pause, it is copied in rounds
    /// while the guest runs first, and the pause copies only what was written since (nil: never).
    /// Needs tracking that counts written pages without collecting them (pagemap).
    public let preCopy: PreCopyRounds?
    /// Where pre-copy keeps a checkpoint's copies until the pause; emptied by every capture.
    private let preCopyStaging: PreCopyStaging
    /// The bytes of pre-copy slots mapped after the last capture (read by status on other threads).
    private let preCopySlotBytes = Atomic<Int>(0)

    /// Pre-copy's estimates, kept on the capturing thread: when tracking last handed over the
    /// written pages (CLOCK_MONOTONIC nanoseconds; the guest's write rate is what it wrote since),
    /// and how fast the recent large copies went (pages per second; the slowest counts, since a
    /// round the copy turns out too slow for lets the guest write more than it copied).
    private var lastCollection: UInt64 = 0
    /// How long holds kept the guest stopped since `lastCollection`: it wrote nothing meanwhile.
    private var heldSinceCollection = Duration.zero
    private var copyRates: [Double] = []
    private var pagesCopiedPerSecond: Double? { copyRates.min() }
    /// Whether the next checkpoint may leave out its look before the stop, from the recent
    /// collections' write rates, and the page tables the last collection re-armed (what stands
    /// in for the look's count when it is left out).
    private var preStopLook: PreStopLook
    private var lastCollectionPageTables = 0

    /// The default `preCopy`: about 2 ms of collecting and copying (at ~1 µs a page here) is
    /// left to the pause; larger sets are pre-copied in up to 10 rounds, and a guest writing too
    /// fast for them is held in slices of at most 8 ms (the pause bench's dirty load, 1.8 M pages
    /// a second: pause p50 6.5 → 1.7 ms, the guest stopped 26 → 11 % of the time), within
    /// 250 ms, after which held rounds go on only while more than 8,192 pages (4–8 ms of copying
    /// here) are pending and each round leaves fewer than the one before (the same load's longest
    /// pause after its warm-up: 24 → 2.7 ms).
    public static let defaultPreCopy = PreCopyRounds(stopPages: 2048, maxRounds: 10, holdSlice: .milliseconds(8),
                                                            budget: .milliseconds(250), largestPause: 8192)

    public var memory: UnsafeRawBufferPointer { UnsafeRawBufferPointer(ram.bytes) }
    public var syncMemory: UnsafeRawBufferPointer { tracker.reference ?? memory }
    public var trackingMethod: DirtyTrackingMethod { tracker.method }
    /// Memory kept to copy checkpoints out of the guest: staging buffers free for reuse (of every
    /// source in this process) and mapped pre-copy slots. Both are given back after 30 s unneeded.
    public var stagingBytes: Int { StagingPool.shared.freeBytes + preCopySlotBytes.load(ordering: .relaxed) }

    /// How the VM starts.
    public enum Start: Sendable {
        /// Boot it, with guest RAM in a new shared file (`VMDescription.ramFile`).
        case boot
        /// Resume it from a checkpoint: `ramFile` holds the checkpoint's memory (QEMU maps it and
        /// the guest writes into it from then on), `deviceState` is its saved device state.
        /// The guest runs, announced on the network, when the initializer returns. `standby`, when
        /// given, is a QEMU already waiting on `ramFile` (see `startStandby`): it saves the start
        /// of a process at failover time.
        case restore(ramFile: String, deviceState: [UInt8], standby: QEMUProcess? = nil)
    }

    /// Starts a QEMU ahead of need that waits (`-incoming defer`, touching nothing) on `ramFile`
    /// until a `.restore` start hands it the device state: activation then only loads device
    /// state. Use the same arguments as the `.restore` start will.
    public static func startStandby(description: VMDescription, ramFile: String, preloadLibrary: String?, tracking: DirtyTrackingPreference,
                                    extraArguments: [String], logger: Logger,
                                    onExit: @escaping @Sendable (QEMUError) -> Void) throws -> QEMUProcess {
        _ = try trackingMethod(tracking, preloadLibrary: preloadLibrary)  // the same checks as the start it stands in for
        return try QEMUProcess(description: description, ramFile: ramFile, mode: .incoming,
                               preloadLibrary: preloadLibrary,
                               extraArguments: extraArguments, logger: logger, onExit: onExit)
    }

    private static func trackingMethod(_ tracking: DirtyTrackingPreference, preloadLibrary: String?) throws -> DirtyTrackingMethod {
        let method: DirtyTrackingMethod
        switch tracking {
        case .pagemap: method = .pagemap
        case .compare: method = .compare
        case .auto: method = PagemapDirtyTracker.kernelSupportsPagemapScan && preloadLibrary != nil ? .pagemap : .compare
        }
        if method == .pagemap, preloadLibrary == nil {
            throw QEMUError.tracking("pagemap tracking needs the preload library (libUnderstudyPreload.so)")
        }
        return method
    }

    /// Starts the VM with guest RAM in a shared file and prepares dirty tracking (armed later,
    /// by `startTracking`, when a backup is to be synchronised).
    /// `loaded` runs once a `.restore` start's QEMU has loaded the device state (the guest may
    /// run from then on): a failure before it leaves the RAM file as it was.
    public init(description: VMDescription, start: Start = .boot, preloadLibrary: String?, tracking: DirtyTrackingPreference,
                extraArguments: [String] = [], boundary: EpochBoundary? = nil, beforeStop: (@Sendable () -> Void)? = nil,
                preCopy: PreCopyRounds? = QEMUCheckpointSource.defaultPreCopy, preStopLook: PreStopLook = PreStopLook(),
                loaded: () -> Void = {}, logger: Logger, onExit: @escaping @Sendable (QEMUError) -> Void) throws {
        let method = try Self.trackingMethod(tracking, preloadLibrary: preloadLibrary)
        identity = description.identity
        self.boundary = boundary
        self.beforeStop = beforeStop
        self.preCopy = preCopy
        self.preStopLook = preStopLook
        pageSize = Int(identity.pageSize)
        preCopyStaging = PreCopyStaging(guestBytes: Int(description.memoryBytes), pageSize: pageSize)
        let ramFile: String
        switch start {
        case .boot:
            ramFile = description.ramFile
            // What a killed agent left in its own private directory goes; the file is then new.
            try PrivateDirectory(path: description.privateDirectory).discard(VMDescription.ramFileName)
            ram = try GuestRAM(path: ramFile, size: Int(description.memoryBytes), create: true)
        case .restore(let file, _, _):
            ramFile = file
            ram = try GuestRAM(path: ramFile, size: Int(description.memoryBytes), create: false)
        }
        do {
            let qemu: QEMUProcess
            if case .restore(_, _, let standby?) = start {
                qemu = standby
            } else {
                qemu = try QEMUProcess(description: description, ramFile: ramFile, mode: start.processMode,
                                       preloadLibrary: preloadLibrary,
                                       extraArguments: extraArguments, logger: logger, onExit: onExit)
            }
            self.qemu = qemu
            if case .restore(_, let deviceState, _) = start {
                do {
                    try qemu.loadDeviceState(deviceState)
                    loaded()
                    try qemu.announce()
                } catch {
                    qemu.stop()
                    throw error
                }
            }
        } catch {
            if case .boot = start {
                unlink(ramFile)
                rmdir(description.privateDirectory)
            }
            throw error
        }
        switch method {
        case .pagemap:
            let range = try GuestRAM.locate(pid: qemu.pid, path: ramFile, size: Int(description.memoryBytes))
            tracker = PagemapDirtyTracker(pid: qemu.pid, ramStart: range.start, ramSize: range.size, pageSize: pageSize,
                                          controlSocket: description.preloadSocket)
        case .compare:
            tracker = ComparingDirtyTracker(memory: UnsafeRawBufferPointer(ram.bytes), pageSize: pageSize)
        }
        logger.notice("dirty-page tracking", metadata: ["method": "\(method)", "vm": "\(description.id)"])
    }

    public func startTracking() throws {
        try tracker.arm()
        restartRateClock()
    }

    /// The RAM file's data ranges (SEEK_DATA): the pages the guest never touched are holes.
    public func pagesWithData() -> [UInt64] {
        let size = UInt64(pageSize)
        return Array(ram.dataRanges().lazy.flatMap { ($0.lowerBound / size)..<(($0.upperBound + size - 1) / size) })
    }

    public func collectDirtyPages() throws -> [UInt64] {
        let pages = try tracker.collect()
        collected(pages)
        return pages
    }

    /// Tracking handed over the written `pages` just now: the guest's write rate counts from here.
    /// `stopped`, for a collection in a pause, is when the guest was already stopped: it wrote them
    /// before that (CLOCK_MONOTONIC nanoseconds).
    private func collected(_ pages: [UInt64], stopped: UInt64 = HostClock.monotonic()) {
        preStopLook.collected(pages: pages.count, running: running(until: stopped))
        lastCollectionPageTables = PendingWrites(collected: pages, pageSize: pageSize).pageTables
        restartRateClock()
    }

    /// The guest's write rate counts from now: tracking was armed or handed over the written pages.
    private func restartRateClock() {
        lastCollection = HostClock.monotonic()
        heldSinceCollection = .zero
    }

    /// How long the guest ran from when tracking last handed over the written pages until `time`
    /// (CLOCK_MONOTONIC nanoseconds; holds stopped it meanwhile). Nil before tracking was armed:
    /// unknown, so no rate is taken from it and the next checkpoint looks.
    private func running(until time: UInt64 = HostClock.monotonic()) -> Duration? {
        lastCollection > 0 ? HostClock.span(from: lastCollection, to: time) - heldSinceCollection : nil
    }

    /// The pause's priority (`VMDescription.pausePriority`) for the whole checkpoint: when the
    /// calling thread dropped it at the end of each capture, the host's scheduler gave its core
    /// to another task at once in most checkpoints under pgbench (the vCPU, just resumed), and
    /// the encoding, and so the reply's release, waited 0.55 ms at the median, 2 ms at p90.
    public func withCheckpointPriority<T>(_ body: (_ lower: () -> Void) throws -> T) rethrows -> T {
        let hold = qemu.holdPausePriority()
        defer { hold.end() }
        return try body { hold.end() }
    }

    public func capture(epoch: UInt64, resume: Bool) throws -> CapturedCheckpoint {
        // At the pause's priority: pre-copy decides how much the pause has left to copy, and a
        // round that waits for a core lets the guest write more (on a loaded host a round here
        // took hundreds of milliseconds). It is bounded: at most `maxRounds`, each of at most
        // `longestRound` with the guest running or of holds of at most `holdSlice`.
        defer {
            preCopyStaging.reset()
            preCopySlotBytes.store(preCopyStaging.mappedSlots * pageSize, ordering: .relaxed)
        }
        let (preCopy, pending) = try qemu.withPausePriority { try copyBeforePause() }
        let collectFirst = Self.collectsBeforeDeviceSave(pending: pending)
        beforeStop?()
        let start = ContinuousClock.now
        var captured: CapturedCheckpoint?
        var agent = PauseBreakdown()
        var stopped: UInt64 = 0
        let saved: QEMUProcess.DeviceStateSave
        do {
            // While the VM is stopped no vCPU runs and device I/O is drained, so the dirty set is
            // complete. It is copied while QEMU serialises the device state, which only reads the
            // devices (the exactness tests check that nothing writes guest RAM after the
            // collection), and collected before or beside that (`collectsBeforeDeviceSave`).
            saved = try qemu.saveDeviceState(resume: resume) { devicesMaySave in
                let (began, cpu) = (HostClock.monotonic(), HostClock.threadCPU())
                stopped = began
                if !collectFirst { try devicesMaySave() }
                let pages = try tracker.collect()
                try devicesMaySave()
                let collected = HostClock.monotonic()
                let staging = CapturedCheckpoint(copying: pages, from: memory, pageSize: pageSize)
                let copied = HostClock.monotonic()
                boundary?(epoch, staging)
                let sealed = HostClock.monotonic()
                agent.collect = HostClock.span(from: began, to: collected)
                agent.copy = HostClock.span(from: collected, to: copied)
                agent.boundary = HostClock.span(from: copied, to: sealed)
                agent.preempted = HostClock.span(from: HostClock.threadCPU() - cpu, to: sealed - began)
                captured = staging
            }
        } catch {
            // Never leave the guest paused because a capture failed: it keeps running unprotected.
            if resume { _ = try? qemu.qmp.execute("cont") }
            throw error
        }
        let paused = captured!
        collected(paused.pageIndices, stopped: stopped)
        noteCopy(pages: paused.pageIndices.count, took: agent.copy)
        paused.deviceState = saved.bytes
        paused.pause = saved.pause ?? ContinuousClock.now - start
        var breakdown = saved.breakdown
        breakdown.total = paused.pause
        (breakdown.collect, breakdown.copy, breakdown.boundary, breakdown.preempted) = (agent.collect, agent.copy, agent.boundary, agent.preempted)
        breakdown.pages = paused.pageIndices.count
        (breakdown.preCopiedPages, breakdown.preCopyRounds, breakdown.heldRounds, breakdown.holds, breakdown.held, breakdown.longestHold)
            = (preCopy.preCopiedPages, preCopy.preCopyRounds, preCopy.heldRounds, preCopy.holds, preCopy.held, preCopy.longestHold)
        breakdown.skippedLooks = preCopy.skippedLooks
        paused.pauseBreakdown = breakdown
        return CapturedCheckpoint.merging(preCopied: preCopyStaging, paused: paused)
    }

    /// Pre-copy (`preCopy`): while the dirty set is large, copies it into `preCopyStaging` before
    /// the pause and collects again, with the guest running or, for a guest writing too fast for
    /// that, held in slices. Each collection re-arms tracking, so a page written after its copy is
    /// collected again, by a later round, which copies it again into its slot, or by the pause,
    /// whose copy then supersedes the slot's.
    /// Copies from `syncMemory`: with comparison tracking a copy of guest memory could hold a value
    /// the guest reverts before the pause, which the comparison would then not find again.
    /// Soon after a collection of a guest writing slowly, the look is left out (`PreStopLook`):
    /// its estimate stands in for the look's count, and the last collection's page tables for
    /// the look's (not fewer for a smaller estimate: a guest that wrote a few pages in each of
    /// many tables would then be collected beside the device save, the slow order for it).
    /// Returns the breakdown's pre-copy part (pages copied, rounds, held rounds, holds, a left-out
    /// look), and what was pending at the last look (nil without pre-copy).
    private func copyBeforePause() throws -> (PauseBreakdown, PendingWrites?) {
        var record = PauseBreakdown()
        guard var rounds = preCopy else { return (record, nil) }
        // Only a tracker that can look has a look to leave out. The pause's staging is made ready
        // for as much as a look would leave it (`stopPages`), not only the estimate: a burst the
        // estimate missed is then copied into mapped memory, not faulted in during the pause.
        if tracker.method == .pagemap, let ran = running(),
           let estimate = preStopLook.pendingWithoutLooking(running: ran),
           !StagingPool.shared.reserve(byteCount: Self.pauseStagingBytes(pending: max(estimate, rounds.stopPages), pageSize: pageSize)) {
            record.skippedLooks = 1
            return (record, PendingWrites(pages: estimate, pageTables: lastCollectionPageTables))
        }
        let began = HostClock.monotonic()
        func elapsed() -> Duration { HostClock.span(from: began, to: HostClock.monotonic()) }
        var looked: PendingWrites?
        while let writes = try tracker.pendingWrites() {
            looked = writes
            let pending = writes.pages
            var decided = rounds
            let round = decided.next(pending: pending, pagesWrittenPerSecond: writeRate(pending: pending),
                                     pagesCopiedPerSecond: pagesCopiedPerSecond, elapsed: elapsed())
            guard round != .pause else {
                // What the pause will copy: what is pending now and what the guest writes before
                // the stop. Its staging is made ready now, while the guest runs; when that took a new
                // buffer the guest wrote meanwhile, so the decision is taken again, and staging made
                // ready for what is pending then (past the budget too: measured in a warm-up, a
                // pause that copied 196 k pages into new memory took 1.3 s, into ready memory 98 ms).
                if StagingPool.shared.reserve(byteCount: Self.pauseStagingBytes(pending: pending, pageSize: pageSize)) { continue }
                break
            }
            // The round's slots are faulted in before it collects, while the guest runs, so that the
            // holds only copy. New memory is slow to fault in here (2.1 s for 179 k pages beside the
            // guest), and the guest writes meanwhile: pages collected before it would be stale by the
            // copy (measured: a held round of 196 k pages, collected before its slots were faulted
            // in, found all of them written again, and the pause copied them for 73 ms), so the
            // round is decided again on what is pending then. Faulting in during the holds instead
            // measured worse (a 9 s first checkpoint of 549 holds that copied about 700 pages each,
            // under the ~1 ms the guest runs per hold).
            if preCopyStaging.reserve(pending: pending) { continue }
            rounds = decided
            let placement = preCopyStaging.place(try collectDirtyPages())
            let pages = placement.pages
            record.preCopiedPages += pages.count
            guard case .held(let hold) = round else {
                preCopyStaging.copy(placement, at: 0..<pages.count, from: syncMemory)
                noteCopy(pages: pages.count, took: HostClock.span(from: lastCollection, to: HostClock.monotonic()))
                continue
            }
            var done = 0
            while done < pages.count {
                let held = try holdGuest(for: hold.slice) { until in
                    // Slices of 64 pages, until the hold's time is up: a slice sized from a copy
                    // rate would overrun whenever the rate falls (measured: 70 ms holds when it fell
                    // from 1.7 M to 93 k pages/s). At least one slice, so that every hold gains.
                    var end = done
                    repeat {
                        let next = min(pages.count, end + 64)
                        preCopyStaging.copy(placement, at: end..<next, from: syncMemory)
                        end = next
                    } while end < pages.count && HostClock.monotonic() < until
                    return end
                }
                noteCopy(pages: held.result - done, took: held.copy)
                let gap = hold.gap(afterCopying: held.result - done)
                done = held.result
                record.holds += 1
                record.longestHold = max(record.longestHold, held.stall)
                record.held += held.stall
                heldSinceCollection += held.stall
                if done < pages.count { Thread.sleep(forTimeInterval: gap.seconds) }
            }
        }
        (record.preCopyRounds, record.heldRounds) = (rounds.rounds, rounds.heldRounds)
        return (record, looked)
    }

    /// The staging the pause takes when `pending` pages are pending before the stop: room for half
    /// as many again written before the stop, and for a small set.
    private static func pauseStagingBytes(pending: Int, pageSize: Int) -> Int { (pending + pending / 2 + 256) * pageSize }

    /// Whether the pause collects the written pages before QEMU serialises the devices, rather than
    /// beside it, `pending` being what the last look before the stop found (nil: not looked).
    /// The collection re-arms tracking in every page table holding a written page, and each flushes
    /// the TLB of every core running a QEMU thread (see preload.c): beside the device save each
    /// flush interrupted QEMU's core too, about 12 µs of the pause per table in this nested VM.
    /// A few tables cost less than the device save (0.2–0.3 ms) that the collection then overlaps.
    /// Measured (pause bench, 1 GiB guest): always first, the page-cache fill's pauses (31 pages)
    /// grew by 0.2 ms at p50; always beside, the dirty load's p99 was 0.7 ms longer.
    static func collectsBeforeDeviceSave(pending: PendingWrites?) -> Bool {
        pending.map { $0.pageTables > pageTablesCollectedBesideDeviceSave } ?? true
    }

    /// The most page tables a collection may re-arm beside QEMU's device save.
    static let pageTablesCollectedBesideDeviceSave = 16

    /// Runs `body` (which cannot fail) with the guest stopped by QMP stop and resumed by cont,
    /// telling it when the hold's `slice` ends (CLOCK_MONOTONIC nanoseconds). The stall is from
    /// sending stop until cont returned, an upper bound of what the guest saw.
    private func holdGuest<Result>(for slice: Duration, _ body: (_ until: UInt64) -> Result) throws
        -> (result: Result, stall: Duration, copy: Duration) {
        let stopping = HostClock.monotonic()
        try qemu.qmp.execute("stop")
        let stopped = HostClock.monotonic()
        let result = body(stopped + UInt64(max(0, slice.seconds) * 1e9))
        let copied = HostClock.monotonic()
        try qemu.qmp.execute("cont")
        return (result, HostClock.span(from: stopping, to: HostClock.monotonic()), HostClock.span(from: stopped, to: copied))
    }

    /// Pages per second the guest wrote since the last collection, `pending` being what it wrote,
    /// per second it ran: holds stopped it (a held round's rate would otherwise look as low as the
    /// hold made it, and the next round's gaps would let it write more than they should).
    private func writeRate(pending: Int) -> Double? {
        guard let elapsed = running(), elapsed > .zero else { return nil }
        return Double(pending) / elapsed.seconds
    }

    /// Keeps the copy rate of copies large enough to time (a few hundred pages and more).
    private func noteCopy(pages: Int, took duration: Duration) {
        guard pages >= 256, duration > .zero else { return }
        copyRates.append(Double(pages) / duration.seconds)
        if copyRates.count > 8 { copyRates.removeFirst() }
    }

    public func hold(for duration: Duration) throws {
        _ = try holdGuest(for: duration) { _ in Thread.sleep(forTimeInterval: duration.seconds) }
    }

    /// Resumes a guest left paused by `capture(resume: false)`.
    public func resume() throws { try qemu.qmp.execute("cont") }

    /// Stops QEMU and removes the RAM file (a restored VM's too: once the guest has run, the
    /// file no longer holds the checkpoint it was restored from) and the private directory.
    public func shutdown() {
        qemu.stop()
        unlink(qemu.ramFile)
        rmdir(qemu.description.privateDirectory)
    }
}

extension QEMUCheckpointSource.Start {
    var processMode: QEMUProcess.Mode {
        if case .boot = self { .boot } else { .incoming }
    }
}
