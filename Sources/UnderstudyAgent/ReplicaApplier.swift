import Foundation
import Logging
import UnderstudyProtocol
import UnderstudyReplica
import UnderstudySystem
import UnderstudyTransport

/// The per-session apply thread: executes replica work strictly in arrival order and sends the
/// ACK of each checkpoint once its journal is sealed.
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

    init(store: ReplicaStore, storeLock: NSLock, connection: FrameConnection, decoders: [PageDecoder], depth: Int, logger: Logger,
         completed: @escaping @Sendable (Work) -> Void) {
        let queue = BlockingQueue<Work>(capacity: depth)
        self.queue = queue
        thread = JoinableThread(name: "backup-apply") { [self] in
            while let work = queue.pop() {
                storeLock.lock()
                defer { storeLock.unlock() }
                do {
                    var acknowledged: Result<Void, any Error> = .success(())
                    switch work {
                    case .beginSync: try store.beginSync()
                    case .syncPages(let batch): try store.applySyncPages(batch, decoder: decoders[0])
                    case .syncDiskWrites(let batch): try store.applySyncDiskWrites(batch)
                    case .finishSync: try store.finishSync()
                    case .commit(let staged):
                        try store.seal(staged, decoders: decoders)
                        // Sealed and synced: durable against our own crash and a power cut, so the
                        // primary may release its output. Applied even when the ACK cannot be sent
                        // (the link just failed): the primary may have seen it. An apply that
                        // fails stays sealed in the store, which finishes it before the next
                        // checkpoint or an activation.
                        acknowledged = Result { try connection.send(.ack(epoch: staged.epoch)) }
                        try store.applySealed()
                    }
                    // Reported before a failed ACK ends the session: the store holds it either way,
                    // and a primary that stops closes the link right after its last checkpoint.
                    completed(work)
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

    func enqueue(_ work: Work) { queue.push(work) }

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
