import Foundation
import UnderstudyProtocol

/// Where checkpoints come from: a VM under QEMU, or a synthetic guest for tests and benchmarks.
///
/// Ordering rules the primary relies on:
/// - `startTracking` arms write tracking *before* the initial sync reads any page, so a page
///   written while it is being read is caught by the next `collectDirtyPages` or `capture`.
/// - `capture` pauses the guest, takes every page written since the previous collection,
///   copies them, saves the device state, seals the epoch's disk writes and network output, and
///   resumes; only what it returns is epoch content.
public protocol CheckpointSource: AnyObject, Sendable {
    var identity: VMIdentity { get }
    /// The guest's memory as the agent maps it.
    var memory: UnsafeRawBufferPointer { get }
    /// What the initial sync reads its pages from while the guest runs. Guest memory when
    /// tracking sees every write. When tracking compares pages with a copy, that copy: a page
    /// read from guest memory could be sent with a value the guest later reverts, the comparison
    /// would then find it unchanged, and the backup would keep the transient value.
    var syncMemory: UnsafeRawBufferPointer { get }
    /// Arms write tracking.
    func startTracking() throws
    /// The pages that may hold anything but zeroes, in order, asked after `startTracking`: the
    /// initial sync reads only these, since the backup's replica starts zeroed. A page the guest
    /// writes after the answer is tracked, so it reaches the backup all the same.
    func pagesWithData() throws -> [UInt64]
    /// Pages written since the last collection, without pausing the guest (pre-copy rounds).
    func collectDirtyPages() throws -> [UInt64]
    /// Pauses the guest, captures the content of checkpoint `epoch`, and resumes the guest unless
    /// `resume` is false (a final checkpoint before a switchover, or a consistency check).
    func capture(epoch: UInt64, resume: Bool) throws -> CapturedCheckpoint
    /// Runs `body`, one whole checkpoint (its capture, then encoding and queueing it), with the
    /// calling thread at the priority the source's pauses run at, if any; `lower` gives the
    /// thread its own priority back before `body` ends.
    func withCheckpointPriority<T>(_ body: (_ lower: () -> Void) throws -> T) rethrows -> T
    /// Keeps the guest paused for `duration`, then lets it run again: slows a guest whose
    /// replica lags behind its recovery-point objective.
    func hold(for duration: Duration) throws
}

extension CheckpointSource {
    /// Without a priority of its own for pauses: `body` runs as it is.
    public func withCheckpointPriority<T>(_ body: (_ lower: () -> Void) throws -> T) rethrows -> T {
        try body {}
    }

    public var syncMemory: UnsafeRawBufferPointer { memory }

    /// Without a way to tell: every page.
    public func pagesWithData() throws -> [UInt64] { Array(0..<identity.pageCount) }

    /// For a guest that only runs inside `capture` (synthetic guests): waiting is holding it.
    public func hold(for duration: Duration) throws {
        Thread.sleep(forTimeInterval: duration.seconds)
    }
}
