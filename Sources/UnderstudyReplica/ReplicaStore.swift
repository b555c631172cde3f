import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization
import UnderstudyProtocol

/// The backup's copy of the VM: a memory image file of the VM's memory size, the disk images, the
/// device-state blob and the committed epoch, kept in one directory.
///
/// Files: `memory.img` (guest RAM, mapped shared; QEMU maps the same file on activation),
/// `disk.img` (the guest disk, when the VM has one; `disk0.img`, `disk1.img`, ... with several,
/// unless the configuration names them), `state` (`ReplicaState`, replaced
/// atomically), `journal` (`EpochJournal`), `lock`. Disk changes travel in the journal with the
/// pages, so the disk follows memory: it holds exactly the committed epoch's writes.
///
/// A checkpoint is applied in two calls: `seal` decodes it into the journal, seals and syncs it
/// (from then on it survives this process being killed and the host losing power, so it may be
/// acknowledged), and `applySealed` copies the pages into memory and publishes the new state,
/// after syncing memory and disk. `init` finishes an apply that a killed process or a power cut
/// left with a sealed journal, and the store finishes one that failed (EIO, ENOSPC) before it is
/// used again, so the replica is always exactly one epoch: the old one or the new one. Every
/// write and sync whose order matters goes through `ReplicaStorage`.
public final class ReplicaStore: @unchecked Sendable {
    public let directory: String
    public let identity: VMIdentity
    /// The published state. Other threads (status, the backup's failover monitor, control
    /// requests) read it while the apply thread publishes the next one; the lock makes each read
    /// a whole copy. Without it, a read racing an assignment copies the struct while its arrays
    /// are released, which corrupts the heap.
    public var state: ReplicaState { published.withLock { $0 } }
    private let published: Mutex<ReplicaState>
    /// What `init` had to do to reach a consistent state, for the log (nil: nothing).
    public private(set) var recovery: String?
    /// How long the last `seal` waited for the journal to reach storage.
    public private(set) var lastJournalSync: Duration = .zero

    private let memory: MappedFile
    private let disk: ReplicaDisk?
    private let journal: EpochJournal
    private let lockFD: Int32
    private let storage: ReplicaStorage
    private let pageSize: Int
    /// The journal sealed by `seal` and not yet applied.
    private var sealed: EpochJournal.Header?
    /// One bit per page, reused by every apply to find duplicate pages in an epoch.
    private var seen: [UInt64]
    /// One bit per memory page written since `recordWrittenPages`; nil when not recording.
    private var writtenPages: [UInt64]?
    /// A resynchronisation began while recording: every page was rewritten.
    private var rewrittenWhileRecording = false
    /// The checkpoint the last `consumeCommittedCheckpoint` handed out, while nothing else was
    /// published since (an activation whose QEMU never loaded it gives it back).
    private var consumed: (epoch: UInt64, deviceState: [UInt8])?

    public var memoryPath: String { memory.path }
    /// The replica disk images, one per disk of the VM, in order; empty when it has none.
    public var diskPaths: [String] { disk?.paths ?? [] }
    public var statePath: String { "\(directory)/state" }

    /// Opens (creating if needed) the replica of `identity` in `directory`, and recovers an
    /// interrupted apply. The replica disks are `diskPaths` (by default in `directory`, see above),
    /// one per disk of `identity`.
    /// `storage` carries the writes and syncs that order matters for (tests pass one that loses
    /// power or fails a step).
    public init(directory: String, identity: VMIdentity, diskPaths: [String] = [],
                storage: ReplicaStorage = POSIXReplicaStorage()) throws(ReplicaError) {
        do throws(ProtocolError) { try identity.validate() } catch { throw .invalidContent(error) }
        guard diskPaths.isEmpty || diskPaths.count == identity.diskSizes.count else {
            throw .identityMismatch("\(diskPaths.count) replica disk paths for \(identity.diskDescription)")
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw .io(operation: "create directory", path: directory, errno: EACCES)
        }
        self.directory = directory
        self.identity = identity
        self.storage = storage
        pageSize = Int(identity.pageSize)
        lockFD = open("\(directory)/lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lockFD >= 0 else { throw .io(operation: "open", path: "\(directory)/lock", errno: errno) }
        guard flock(lockFD, LOCK_EX | LOCK_NB) == 0 else {
            close(lockFD)
            throw .locked("replica directory \(directory) is in use by another process")
        }
        do throws(ReplicaError) {
            let loaded = try ReplicaState.load(from: "\(directory)/state")
            if let loaded, let mismatch = identity.mismatch(with: loaded.identity) {
                throw .identityMismatch("replica in \(directory) belongs to VM \(loaded.identity): \(mismatch); "
                                        + "remove the directory or configure another one")
            }
            published = Mutex(loaded ?? ReplicaState(identity: identity))
            memory = try MappedFile(path: "\(directory)/memory.img", size: Int(identity.memorySize))
            disk = identity.diskSizes.isEmpty ? nil
                : try ReplicaDisk(paths: diskPaths.isEmpty ? Self.defaultDiskPaths(in: directory, count: identity.diskSizes.count) : diskPaths,
                                  sizes: identity.diskSizes)
            journal = try EpochJournal(path: "\(directory)/journal", pageSize: pageSize)
            seen = [UInt64](repeating: 0, count: Int((identity.pageCount + 63) / 64))
        } catch {
            Self.unlock(lockFD)
            throw error
        }
        recovery = try recoverSealedJournal()
    }

    deinit { Self.unlock(lockFD) }

    /// Unlocks, then closes. A `flock` belongs to the open file description, which a process this
    /// one is starting also holds between its fork and its exec: a close alone would leave the
    /// directory locked for that while, and a reopen here would be refused as "in use".
    private static func unlock(_ descriptor: Int32) {
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }

    /// Hands the committed checkpoint to a VM that starts from it (activation): returns its epoch
    /// and device state and marks the replica empty first, because the running guest writes
    /// into the memory image and the disk from then on, so they stop being that checkpoint.
    /// A later backup session resynchronises from scratch.
    public func consumeCommittedCheckpoint() throws(ReplicaError) -> (epoch: UInt64, deviceState: [UInt8]) {
        try finishInterruptedApply()
        if let refusal = state.activationRefusal { throw .notReady("\(directory): \(refusal)") }
        let checkpoint = (epoch: state.committedEpoch, deviceState: state.deviceState)
        try publish(phase: .empty, epoch: 0, deviceState: [])
        consumed = checkpoint
        return checkpoint
    }

    /// Gives back the checkpoint `consumeCommittedCheckpoint` handed out, to an activation whose
    /// QEMU never loaded it: no guest ran, nothing wrote into the memory image or the disk, so the
    /// replica is that checkpoint still and stays activatable. Refused once anything else changed
    /// the replica since.
    public func returnConsumedCheckpoint() throws(ReplicaError) {
        guard state.phase == .empty, let consumed else {
            throw .notReady("the replica in \(directory) is \(state.phase) and holds no checkpoint handed out for activation")
        }
        try publish(phase: .committed, epoch: consumed.epoch, deviceState: consumed.deviceState)
    }

    /// Starts noting which memory pages later applies write, so that a copy of the memory image
    /// made meanwhile, without holding up the applies, can then be brought up to date with just
    /// those pages (`takeWrittenPages`). Call between two pieces of replica work, as the applies.
    public func recordWrittenPages() {
        writtenPages = [UInt64](repeating: 0, count: seen.count)
        rewrittenWhileRecording = false
    }

    /// Stops recording and returns the byte ranges of the memory image written since
    /// `recordWrittenPages` (adjacent pages merged); nil when a resynchronisation rewrote the whole
    /// image meanwhile, or nothing was recording.
    public func takeWrittenPages() -> [Range<UInt64>]? {
        defer { writtenPages = nil }
        guard let bits = writtenPages, !rewrittenWhileRecording else { return nil }
        var ranges: [Range<UInt64>] = []
        let size = UInt64(pageSize)
        for (word, value) in bits.enumerated() where value != 0 {
            for bit in 0..<64 where value & (1 << UInt64(bit)) != 0 {
                let start = UInt64(word * 64 + bit) * size
                if let last = ranges.last, last.upperBound == start {
                    ranges[ranges.count - 1] = last.lowerBound..<start + size
                } else {
                    ranges.append(start..<start + size)
                }
            }
        }
        return ranges
    }

    /// Empties the replica for `reason`, durably, without touching memory or disk: the node was
    /// demoted after another copy of the VM ran, so whatever this replica holds belongs to a
    /// history that copy has left, and must never be activated. Only a full sync (`beginSync`)
    /// makes it a replica again; the reason stays in the state (`activationRefusal`) until then.
    public func reset(because reason: String) throws(ReplicaError) {
        sealed = nil
        try publish(phase: .empty, epoch: 0, deviceState: [], resetReason: reason)
    }

    /// Starts a full resynchronisation: the replica stops being a usable image until the next commit.
    public func beginSync() throws(ReplicaError) {
        if writtenPages != nil { rewrittenWhileRecording = true }
        sealed = nil
        try publish(phase: .syncing, epoch: 0, deviceState: [])
        try memory.zero()
        try disk?.reset()
    }

    /// Writes sync pages straight into memory (sync pages belong to no epoch; nothing to roll back).
    public func applySyncPages(_ batch: PageBatch, decoder: PageDecoder) throws(ReplicaError) {
        guard state.phase == .syncing else { throw .notReady("sync pages arrived while the replica is \(state.phase)") }
        for entry in batch.entries {
            let page = memoryPage(entry.index)
            do throws(ProtocolError) {
                try decoder.decode(entry, of: batch, base: UnsafeRawBufferPointer(page), into: page)
            } catch {
                throw .invalidContent(error)
            }
        }
    }

    /// Writes sync disk content straight into the disk image (like sync pages, part of no epoch).
    public func applySyncDiskWrites(_ batch: DiskWriteBatch) throws(ReplicaError) {
        guard state.phase == .syncing else { throw .notReady("sync disk writes arrived while the replica is \(state.phase)") }
        let disk = try requireDisk()
        for entry in batch.entries {
            try disk.apply(try change(at: entry, of: batch))
        }
    }

    public func finishSync() throws(ReplicaError) {
        guard state.phase == .syncing else { throw .notReady("sync finished while the replica is \(state.phase)") }
        try publish(phase: .synced, epoch: 0, deviceState: [])
    }

    /// Decodes a verified checkpoint into the journal, seals it and syncs it. After this returns
    /// the checkpoint is durable against a crash of this process and a power cut of the host;
    /// call `applySealed` next.
    /// - Parameter decoders: one per thread to decode with (pages are decoded in parallel).
    public func seal(_ staged: StagedEpoch, decoders: [PageDecoder]) throws(ReplicaError) {
        guard state.phase == .synced || state.phase == .committed else {
            throw .notReady("checkpoint \(staged.epoch) arrived while the replica is \(state.phase)")
        }
        try finishInterruptedApply()
        let deviceState = try decodeDeviceState(staged)
        let diskChanges = try decodeDiskChanges(staged)
        let layout = EpochJournal.Layout(pageCount: staged.pageCount, pageSize: pageSize, deviceStateLength: deviceState.count,
                                         diskLength: diskChanges.reduce(0) { $0 + EpochJournal.diskRecordSize($1) })
        let header = EpochJournal.Header(baseGeneration: state.generation, epoch: staged.epoch, layout: layout)
        try journal.begin(header)
        try fillJournal(staged, layout: layout, decoders: decoders)
        deviceState.withUnsafeBytes { journal.deviceState(layout: layout).copyMemory(from: $0) }
        var position = 0
        let section = journal.diskSection(layout: layout)
        for change in diskChanges { position = EpochJournal.writeDiskRecord(change, into: section, at: position) }
        journal.seal(header)
        // Once acknowledged, the epoch must survive the backup host losing power (the primary then
        // releases its output). One sync: the body's checksum rejects a journal that reached
        // storage only in part.
        let syncStarted = ContinuousClock.now
        try storage.sync(journal.file.path)
        lastJournalSync = syncStarted.duration(to: .now)
        sealed = header
    }

    /// The staged epoch's whole device state. A delta is decoded against the committed epoch's
    /// state (the one before, as the primary encoded it), and the journal holds the result whole,
    /// like the pages: a replayed apply writes the same state again.
    private func decodeDeviceState(_ staged: StagedEpoch) throws(ReplicaError) -> [UInt8] {
        guard staged.deviceStateEncoded else { return staged.deviceState }
        do throws(ProtocolError) {
            return try DeviceStateCodec.decode(staged.deviceState, previous: state.deviceState,
                                               maxLength: Int(StagingLimits().deviceStateBytes))
        } catch {
            throw .invalidContent(error)
        }
    }

    /// The staged epoch's disk changes, decompressed and checked against the disk's size.
    private func decodeDiskChanges(_ staged: StagedEpoch) throws(ReplicaError) -> [DiskChange] {
        guard !staged.diskBatches.isEmpty else { return [] }
        let disk = try requireDisk()
        var changes: [DiskChange] = []
        for batch in staged.diskBatches {
            for entry in batch.entries {
                let change = try change(at: entry, of: batch)
                try disk.validate(change)
                changes.append(change)
            }
        }
        return changes
    }

    private func change(at entry: DiskWriteBatch.Entry, of batch: DiskWriteBatch) throws(ReplicaError) -> DiskChange {
        do throws(ProtocolError) { return try batch.change(at: entry) } catch { throw .invalidContent(error) }
    }

    private func requireDisk() throws(ReplicaError) -> ReplicaDisk {
        guard let disk else { throw .invalidContent(.unexpected("disk writes for \(identity.id), which has no replicated disk")) }
        return disk
    }

    /// Copies the sealed checkpoint into memory and publishes it as the committed epoch. When a
    /// step fails (EIO, ENOSPC) the checkpoint stays sealed: memory may already hold part of it
    /// while the state still names the epoch before, and only finishing the apply (idempotent:
    /// whole pages) makes the replica one epoch again. The next `seal` and any activation finish
    /// it first, or refuse with the failure.
    public func applySealed() throws(ReplicaError) {
        guard let header = sealed else { throw .notReady("no sealed checkpoint to apply") }
        try replay(header)
        sealed = nil
    }

    /// Finishes a sealed checkpoint whose apply failed part way (memory may hold part of it while
    /// the state names the epoch before): call before reading the replica as one epoch. Throws
    /// the failure when it still cannot; does nothing when no apply was interrupted.
    public func finishInterruptedApply() throws(ReplicaError) {
        if sealed != nil { try applySealed() }
    }

    /// Decodes every page into its journal slot (in parallel).
    private func fillJournal(_ staged: StagedEpoch, layout: EpochJournal.Layout, decoders: [PageDecoder]) throws(ReplicaError) {
        // Slots are assigned in arrival order; a page twice in one epoch would make the XOR base
        // ambiguous, and the encoder never does it, so it is refused.
        var firstSlot: [Int] = []
        var slot = 0
        defer { for batch in staged.pageBatches { for entry in batch.entries { clearSeen(entry.index) } } }
        for batch in staged.pageBatches {
            firstSlot.append(slot)
            for entry in batch.entries {
                guard markSeen(entry.index) else {
                    throw .invalidContent(.malformed("page \(entry.index) appears twice in checkpoint \(staged.epoch)"))
                }
                journal.pageIndexSlot(slot, layout: layout).storeBytes(of: entry.index.bigEndian, as: UInt64.self)
                slot += 1
            }
        }
        let failures = ErrorCollector()
        let slots = firstSlot
        let workers = max(1, min(decoders.count, staged.pageBatches.count))
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            let decoder = decoders[worker]
            for batchIndex in stride(from: worker, to: staged.pageBatches.count, by: workers) {
                let batch = staged.pageBatches[batchIndex]
                for (offset, entry) in batch.entries.enumerated() {
                    do throws(ProtocolError) {
                        try decoder.decode(entry, of: batch, base: UnsafeRawBufferPointer(memoryPage(entry.index)),
                                           into: journal.page(slots[batchIndex] + offset, layout: layout))
                    } catch {
                        failures.record(error)
                        return
                    }
                }
            }
        }
        if let error = failures.first { throw .invalidContent(error) }
    }

    /// Copies a sealed journal's pages into memory and publishes its epoch.
    private func replay(_ header: EpochJournal.Header) throws(ReplicaError) {
        let layout = header.layout
        for slot in 0..<layout.pageCount {
            let index = journal.pageIndex(slot, layout: layout)
            // Recovery reads the journal back from disk: never trust an index blindly.
            guard index < identity.pageCount else { throw .corrupt("journal names page \(index), beyond the last page") }
            memoryPage(index).copyMemory(from: UnsafeRawBufferPointer(journal.page(slot, layout: layout)))
            writtenPages?[Int(index / 64)] |= UInt64(1) << (index % 64)
        }
        if layout.diskLength > 0 {
            guard let disk else { throw .corrupt("journal holds disk changes, but the VM has no disk") }
            try EpochJournal.forEachDiskRecord(in: UnsafeRawBufferPointer(journal.diskSection(layout: layout))) {
                (record) throws(ReplicaError) in try disk.apply(record)
            }
        }
        try publish(phase: .committed, epoch: header.epoch, deviceState: Array(journal.deviceState(layout: layout)))
    }

    /// Finishes the apply of a journal that was sealed on top of the current state.
    private func recoverSealedJournal() throws(ReplicaError) -> String? {
        guard let header = journal.completeHeader(), header.baseGeneration == state.generation,
              state.phase == .synced || state.phase == .committed else {
            return nil
        }
        try replay(header)
        return "finished applying checkpoint \(header.epoch) from the journal (the previous process stopped mid-apply)"
    }

    /// Where the replica disks are when the configuration does not say.
    static func defaultDiskPaths(in directory: String, count: Int) -> [String] {
        count == 1 ? ["\(directory)/disk.img"] : (0..<count).map { "\(directory)/disk\($0).img" }
    }

    private func publish(phase: ReplicaState.Phase, epoch: UInt64, deviceState: [UInt8], resetReason: String? = nil) throws(ReplicaError) {
        if phase == .synced || phase == .committed {
            // The state about to name this image must not reach storage before the image does:
            // after a power cut it would describe memory and disk content that never got there.
            try storage.sync(memory.path)
            for path in disk?.paths ?? [] { try storage.sync(path) }
        }
        var next = state
        next.generation += 1
        next.phase = phase
        next.committedEpoch = epoch
        next.deviceState = deviceState
        next.resetReason = resetReason
        try next.save(to: statePath, storage: storage)
        published.withLock { $0 = next }
        consumed = nil
    }

    private func memoryPage(_ index: UInt64) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: memory.bytes.baseAddress! + Int(index) * pageSize, count: pageSize)
    }

    private func markSeen(_ index: UInt64) -> Bool {
        let (word, bit) = (Int(index / 64), UInt64(1) << (index % 64))
        defer { seen[word] |= bit }
        return seen[word] & bit == 0
    }

    private func clearSeen(_ index: UInt64) { seen[Int(index / 64)] &= ~(UInt64(1) << (index % 64)) }
}

extension ReplicaStore {
    /// The first error of a parallel loop.
    private final class ErrorCollector: @unchecked Sendable {
        private let lock = NSLock()
        private var error: ProtocolError?

        func record(_ error: ProtocolError) {
            lock.lock()
            if self.error == nil { self.error = error }
            lock.unlock()
        }

        var first: ProtocolError? {
            lock.lock()
            defer { lock.unlock() }
            return error
        }
    }
}
