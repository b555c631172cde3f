/// What the backup keeps of the frames the primary's gate gave the guest (input-replay), so that
/// a takeover gives the resumed guest the input its checkpoint may lack: a client's request that
/// reached the primary's guest after the last committed checkpoint, whose reply died with the
/// primary. Without it the resumed guest waits for the client's TCP retransmission, hundreds of
/// milliseconds away (its timeout doubles each time).
///
/// A frame is tagged with the epoch open on the primary when the gate wrote it to QEMU. One
/// tagged `n` may still have been waiting in the socket when checkpoint `n` paused the guest, so
/// the replica committed at `n` keeps frames of epoch `n` and later; earlier ones are in it.
/// Replaying a frame the guest already had only repeats it, as a network may: protocols
/// tolerate duplicates, not losses. Bounded: the oldest frames go first.
public struct GuestInputLog: Sendable {
    public let byteLimit: Int
    /// In arrival order.
    private var entries: [(epoch: UInt64, frame: [UInt8])] = []
    public private(set) var bytes = 0
    /// Frames dropped to stay under `byteLimit`.
    public private(set) var droppedFrames = 0

    public init(byteLimit: Int = 4 << 20) {
        precondition(byteLimit > 0)
        self.byteLimit = byteLimit
    }

    public var count: Int { entries.count }

    /// A frame the guest received while `epoch` was open on the primary.
    public mutating func record(epoch: UInt64, frame: [UInt8]) {
        entries.append((epoch, frame))
        bytes += frame.count
        var oldest = 0
        while bytes > byteLimit, oldest < entries.count {
            bytes -= entries[oldest].frame.count
            oldest += 1
        }
        entries.removeFirst(oldest)
        droppedFrames += oldest
    }

    /// The replica committed `epoch`: frames of earlier epochs are in it.
    public mutating func committed(_ epoch: UInt64) {
        entries.removeAll { entry in
            guard entry.epoch < epoch else { return false }
            bytes -= entry.frame.count
            return true
        }
    }

    /// The frames to give a guest resumed from the replica committed at `epoch`, in arrival order.
    public func replay(onto epoch: UInt64) -> [[UInt8]] {
        entries.filter { $0.epoch >= epoch }.map(\.frame)
    }

    /// A full synchronisation replaces the replica: nothing recorded before it applies.
    public mutating func removeAll() {
        entries = []
        bytes = 0
    }
}
