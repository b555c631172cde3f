import Foundation
import UnderstudyDisk
import UnderstudyProtocol
import UnderstudyQEMU

/// What the backup may lack since the newest checkpoint it acknowledged: for every checkpoint
/// captured after it, the pages it carried and its disk changes; and the disk writes the guest
/// made while no session ran, spilled to a bounded local journal. With it, a primary whose link
/// came back sends one catch-up checkpoint instead of resynchronising everything.
///
/// Pages written while no session ran need no record here: write tracking keeps collecting them,
/// and the catch-up checkpoint's capture takes them all. Disk writes do need one, because the disk
/// recorder hands each write over once.
///
/// Ordering rule: entries are in epoch order, and each entry's journal range precedes its
/// in-memory changes, so replaying the entries after the backup's committed epoch, then the
/// tail, then the catch-up capture's changes, reproduces the guest's writes in the order it made
/// them. Replaying a write the backup already applied is harmless: every later one is replayed too.
public final class ReplicationBacklog: @unchecked Sendable {
    struct Entry {
        var epoch: UInt64
        var pages: [UInt64]
        /// Writes spilled to the journal before this checkpoint was captured (a catch-up's).
        var journalRange: Range<UInt64>?
        var changes: [DiskChange]
        /// When it was captured (nil: not known): a catch-up onto it is this old when it starts.
        var capturedAt: ContinuousClock.Instant?
    }

    /// What a catch-up checkpoint on top of the backup's committed epoch must carry besides its own capture.
    struct CatchUp {
        let base: UInt64
        let entries: [Entry]
        let tail: Range<UInt64>?
        /// Pages the backup's copy may differ from the primary's last-sent copy: they go whole, without XOR delta.
        let resentPages: Set<UInt64>
        /// When the base was captured (nil: not known): the replica is as old as that until the catch-up is acknowledged.
        let baseCapturedAt: ContinuousClock.Instant?

        init(base: UInt64, entries: [Entry], tail: Range<UInt64>?, baseCapturedAt: ContinuousClock.Instant? = nil) {
            self.base = base
            self.baseCapturedAt = baseCapturedAt
            self.entries = entries
            self.tail = tail
            resentPages = Set(entries.lazy.flatMap(\.pages))
        }

        /// What it resends, before compression: the resent pages and the journaled disk writes
        /// (the catch-up's progress is measured against it).
        func bytes(pageSize: Int) -> Int {
            let journaled = (entries.compactMap(\.journalRange) + [tail].compactMap { $0 }).reduce(0) { $0 + Int($1.count) }
            return resentPages.count * pageSize + journaled
        }
    }

    /// The encoder's last-sent copy of guest memory, which a catch-up continues from.
    let lastSent: AnonymousMemory
    private let lock = NSLock()
    private let journalPath: String
    private let journalLimit: Int
    private var journal: DiskChangeJournal?
    /// The newest epoch the backup acknowledged since the last full synchronisation; nil: none yet.
    private var acknowledged: UInt64?
    /// When `acknowledged` was captured, if this backlog saw it captured.
    private var acknowledgedCapturedAt: ContinuousClock.Instant?
    private var entries: [Entry] = []
    private var tail: Range<UInt64>?
    /// Why no catch-up is possible until the next full synchronisation (nil: it may be).
    private var broken: String?

    /// - Parameters:
    ///   - journalPath: the file for disk writes made while no session runs (created when needed).
    ///   - journalLimit: its size limit in bytes; past it, the next session resynchronises in full.
    public init(memorySize: Int, journalPath: String, journalLimit: Int) {
        lastSent = AnonymousMemory(size: memorySize, purpose: "the last-sent copy")
        self.journalPath = journalPath
        self.journalLimit = journalLimit
    }

    deinit { journal?.remove() }

    /// Bytes held in the journal now.
    public var journalBytes: Int { lock.withLock { Int(journal?.end ?? 0) } }

    /// A full synchronisation starts: nothing before it matters any more, and the backup's
    /// replica starts from zeroes.
    func reset() {
        lastSent.zero()
        lock.withLock {
            entries = []
            tail = nil
            acknowledged = nil
            acknowledgedCapturedAt = nil
            broken = nil
            try? journal?.reset()
        }
    }

    /// Checkpoint `epoch` was captured (`at`, if known): its pages, and its disk changes (after the tail, which it takes over).
    func captured(epoch: UInt64, pages: [UInt64], changes: [DiskChange], at: ContinuousClock.Instant? = nil) {
        lock.withLock {
            entries.append(Entry(epoch: epoch, pages: pages, journalRange: tail, changes: changes, capturedAt: at))
            tail = nil
        }
    }

    /// The backup committed epochs through `epoch`.
    func acknowledged(through epoch: UInt64) {
        lock.withLock {
            noteCapture(of: epoch)
            entries.removeAll { $0.epoch <= epoch }
            acknowledged = max(acknowledged ?? 0, epoch)
            if entries.allSatisfy({ $0.journalRange == nil }), tail == nil, (journal?.end ?? 0) > 0 { try? journal?.reset() }
        }
    }

    /// Disk writes the guest made while no session ran, in order. Returns a message when they
    /// overflowed the journal (the next session then resynchronises in full).
    func spill(_ changes: [DiskChange]) -> String? {
        guard !changes.isEmpty else { return nil }
        return lock.withLock {
            // Nothing to catch up from (no ACK since the full sync, or broken): the writes are not kept.
            guard broken == nil, acknowledged != nil else { return nil }
            do {
                if journal == nil {
                    try FileManager.default.createDirectory(atPath: (journalPath as NSString).deletingLastPathComponent,
                                                            withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
                    journal = try DiskChangeJournal(path: journalPath, limit: journalLimit)
                }
                let range = try journal!.append(changes)
                tail = tail.map { $0.lowerBound..<range.upperBound } ?? range
                return nil
            } catch {
                breakUp("\(error)")
                return broken
            }
        }
    }

    /// Catch-up is impossible until the next full synchronisation.
    func invalidate(_ reason: String) { lock.withLock { breakUp(reason) } }

    /// What a catch-up onto a replica committed at `committed` needs, or why it cannot be done.
    func catchUp(onto committed: UInt64) -> Result<CatchUp, CatchUpRefusal> {
        lock.withLock {
            if let broken { return .failure(CatchUpRefusal(reason: broken)) }
            guard let acknowledged else { return .failure(CatchUpRefusal(reason: "no checkpoint acknowledged yet")) }
            guard committed >= acknowledged else {
                return .failure(CatchUpRefusal(reason: "the backup's replica is committed at checkpoint \(committed), "
                                               + "older than the last one it acknowledged (\(acknowledged))"))
            }
            let newest = entries.last?.epoch ?? acknowledged
            guard committed <= newest else {
                return .failure(CatchUpRefusal(reason: "the backup's replica is committed at checkpoint \(committed), newer than any this primary captured (\(newest))"))
            }
            noteCapture(of: committed)
            entries.removeAll { $0.epoch <= committed }
            self.acknowledged = committed
            return .success(CatchUp(base: committed, entries: entries, tail: tail, baseCapturedAt: acknowledgedCapturedAt))
        }
    }

    /// Reads `range` of the journal in order (the catch-up checkpoint's disk content).
    func readJournal(_ range: Range<UInt64>, _ body: ([DiskChange]) throws -> Void) throws {
        guard let journal = lock.withLock({ journal }) else { preconditionFailure("a journal range without a journal") }
        try journal.read(range, body)
    }

    /// The replica moves to `epoch`: remembers when it was captured, if an entry knows.
    private func noteCapture(of epoch: UInt64) {
        acknowledgedCapturedAt = entries.last { $0.epoch == epoch }?.capturedAt ?? (epoch == acknowledged ? acknowledgedCapturedAt : nil)
    }

    private func breakUp(_ reason: String) {
        guard broken == nil else { return }
        broken = reason
        entries = []
        tail = nil
        try? journal?.reset()
    }
}
