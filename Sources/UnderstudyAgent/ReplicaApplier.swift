import Foundation
import Logging
import UnderstudyProtocol
import UnderstudyReplica
import UnderstudySystem
import UnderstudyTransport

/// The per-session apply thread: executes replica work strictly in arrival order and sends the
/// ACK of each checkpoint once its journal is sealed.
///
/// The session reader must keep reading (heartbeats arrive on the same connection) while the
/// replica is slow, so checkpoints never wait for room: the primary has at most its window of
/// them unacknowledged, and the queue has room for that many on top of `depth`. Only the initial
/// sync's batches, which the primary sends as fast as the link allows, wait for one of `depth`
/// places: that is what pushes back on the primary.
final class ReplicaApplier: @unchecked Sendable {
    enum Work: Sendable {
        case beginSync
        case syncPages(PageBatch)
        case syncDiskWrites(DiskWriteBatch)
        case finishSync
        case commit(StagedEpoch)
    }

    private let queue: BlockingQueue<Work>
    private var thread: JoinableThread?
    private let lock = NSLock()
    private var error: String?
    private let depth: Int
    /// Sync work queued and not yet applied, and whether the thread stopped (so nobody waits for it).
    private let syncSlots = NSCondition()
    private var syncQueued = 0
    private var stopped = false

    /// - Parameters:
    ///   - depth: sync batches queued at most; the reader waits for room beyond that.
    ///   - window: checkpoints the primary may have unacknowledged: queued without waiting.
    init(store: ReplicaStore, storeLock: NSLock, connection: FrameConnection, decoders: [PageDecoder], depth: Int, window: Int,
         logger: Logger, completed: @escaping @Sendable (Work, CommitTiming?) -> Void) {
        let queue = BlockingQueue<Work>(capacity: depth + window)
        self.queue = queue
        self.depth = depth
        thread = JoinableThread(name: "backup-apply") { [self] in
            defer { stop() }
            while let work = queue.pop() {
                if case .commit = work {} else { releaseSyncSlot() }
                storeLock.lock()
                defer { storeLock.unlock() }
                do {
                    var acknowledged: Result<Void, any Error> = .success(())
                    var timing: CommitTiming?
                    switch work {
                    case .beginSync: try store.beginSync()
                    case .syncPages(let batch): try store.applySyncPages(batch, decoder: decoders[0])
                    case .syncDiskWrites(let batch): try store.applySyncDiskWrites(batch)
                    case .finishSync: try store.finishSync()
                    case .commit(let staged):
                        let started = ContinuousClock.now
                        try store.seal(staged, decoders: decoders)
                        let sealed = ContinuousClock.now
                        // Sealed and synced: durable against our own crash and a power cut, so the
                        // primary may release its output. Applied even when the ACK cannot be sent
                        // (the link just failed): the primary may have seen it. An apply that
                        // fails stays sealed in the store, which finishes it before the next
                        // checkpoint or an activation.
                        acknowledged = Result { try connection.send(.ack(epoch: staged.epoch)) }
                        try store.applySealed()
                        timing = CommitTiming(seal: started.duration(to: sealed), journalSync: store.lastJournalSync,
                                              apply: sealed.duration(to: .now))
                    }
                    // Reported before a failed ACK ends the session: the store holds it either way,
                    // and a primary that stops closes the link right after its last checkpoint.
                    completed(work, timing)
                    try acknowledged.get()
                } catch {
                    logger.error("replica apply failed", metadata: ["error": "\(error)"])
                    record("\(error)")
                    queue.close()
                    connection.close()
                    return
                }
            }
        }
    }

    var failure: String? {
        lock.lock()
        defer { lock.unlock() }
        return error
    }

    /// Queues `work`; sync work waits while `depth` batches are queued, a checkpoint never does
    /// (up to the window).
    func enqueue(_ work: Work) {
        if case .commit = work {} else {
            syncSlots.lock()
            while syncQueued >= depth, !stopped { syncSlots.wait() }
            syncQueued += 1
            syncSlots.unlock()
        }
        queue.push(work)
    }

    private func releaseSyncSlot() {
        syncSlots.lock()
        syncQueued -= 1
        syncSlots.broadcast()
        syncSlots.unlock()
    }

    private func stop() {
        syncSlots.lock()
        stopped = true
        syncSlots.broadcast()
        syncSlots.unlock()
    }

    /// Applies what is queued, then stops the thread.
    func finish() {
        queue.close()
        thread?.join()
        thread = nil
    }

    private func record(_ message: String) {
        lock.lock()
        if error == nil { error = message }
        lock.unlock()
    }
}
