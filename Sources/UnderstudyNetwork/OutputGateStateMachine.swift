/// The output-commit rule as a value with no I/O: which guest frames may leave, and when.
///
/// Frames from the guest are held under the open epoch. `seal(epoch:)` closes the open epoch
/// under a number (the checkpoint the guest state that produced those frames belongs to), and
/// `acknowledged(through:)` hands back the frames of every sealed epoch up to the acknowledged
/// one, oldest first. The open epoch is never released by any acknowledgement: its frames come
/// from guest state no checkpoint has captured yet. Every misuse resolves towards holding longer,
/// because releasing late is always safe and releasing early never is.
public struct OutputGateStateMachine: Sendable {
    /// The default bound on held bytes: about 1.3 s of a saturated 100 Mbit/s link, far more than
    /// the few epochs in flight at a normal checkpoint rate.
    public static let defaultBufferLimit = 16 << 20

    /// What to do with a frame the guest sent.
    public enum GuestFrameAction: Sendable, Equatable {
        /// Held until its epoch is acknowledged.
        case hold
        /// Buffering is off: send it now.
        case send
        /// The buffer is full: the frame is dropped (and counted), never sent early. The guest's
        /// protocols treat it as loss on the wire.
        case drop
    }

    /// The outcome of `seal(epoch:)`.
    public enum SealAction: Sendable, Equatable {
        /// The open epoch is now sealed under this number, holding this many frames.
        case sealed(frames: Int)
        /// The number is not above the last sealed epoch. Nothing changed: the frames of the
        /// open epoch stay open and leave with a later epoch.
        case rejected(lastSealed: UInt64)
    }

    /// The outcome of `acknowledged(through:)`.
    public enum AcknowledgeAction: Sendable, Equatable {
        /// Send these frames now, in this order (empty when the released epochs held none).
        case send([[UInt8]])
        /// An older or duplicate acknowledgement: everything it covers has been released already.
        case alreadyReleased(lastReleased: UInt64)
        /// The epoch was never sealed (the agent seals before it sends a checkpoint, so this is a
        /// caller bug). The sealed epochs, all older, are covered and sent; the open epoch stays held.
        case unsealed(send: [[UInt8]], lastSealed: UInt64?)
    }

    /// Counters since creation. Bytes are Ethernet frame bytes (without the 4-byte length prefix).
    public struct Statistics: Sendable, Equatable {
        /// Frames waiting for an acknowledgement, open and sealed epochs together.
        public var heldFrames = 0
        public var heldBytes = 0
        /// Frames dropped because the buffer was full.
        public var droppedFrames: UInt64 = 0
        public var droppedBytes: UInt64 = 0
        /// Frames handed out by acknowledgements.
        public var releasedFrames: UInt64 = 0
        public var releasedBytes: UInt64 = 0
        /// Frames sent at once because buffering is off (unprotected output).
        public var passedFrames: UInt64 = 0
        public var passedBytes: UInt64 = 0
        public var lastSealedEpoch: UInt64?
        public var lastReleasedEpoch: UInt64?

        public init() {}
    }

    /// How frames from the guest are treated.
    enum State: Sendable, Equatable {
        /// Output commit: frames wait for their epoch's acknowledgement, at most `limit` bytes.
        case holding(limit: Int)
        /// Frames pass at once: nothing protects the VM, or the unsafe measurement mode.
        case passing
    }

    private struct SealedEpoch: Sendable {
        let epoch: UInt64
        let frames: [[UInt8]]
    }

    private(set) var state: State
    /// The bound on held bytes while holding.
    let bufferLimit: Int
    /// Frames read since the last seal, oldest first.
    private var open: [[UInt8]] = []
    /// Sealed, unacknowledged epochs, oldest first.
    private var sealed: [SealedEpoch] = []
    public private(set) var statistics = Statistics()

    /// - Parameters:
    ///   - bufferLimit: bytes held at most (open and sealed epochs together); must be positive.
    ///   - buffering: false sends every frame at once (no output commit; for measurements only).
    public init(bufferLimit: Int = defaultBufferLimit, buffering: Bool = true) {
        precondition(bufferLimit > 0, "the buffer limit must be positive")
        self.bufferLimit = bufferLimit
        state = buffering ? .holding(limit: bufferLimit) : .passing
    }

    /// Output commit ends: nothing protects the VM any more (its backup is gone and the policy,
    /// under the witness lease when there is one, lets it serve alone). Returns every held frame,
    /// sealed epochs first, then the open epoch, to send now; later frames pass at once.
    public mutating func stopHolding() -> [[UInt8]] {
        guard isBuffering else { return [] }
        sealed.append(SealedEpoch(epoch: statistics.lastSealedEpoch ?? 0, frames: open))
        open.removeAll()
        state = .passing
        return release(count: sealed.count)
    }

    /// Output commit starts (again): a backup is being synchronised. Frames from now on are held
    /// under the open epoch, which the next checkpoint seals; they leave when it is acknowledged.
    public mutating func startHolding() {
        state = .holding(limit: bufferLimit)
    }

    /// True when frames wait for acknowledgements (output commit is on).
    public var isBuffering: Bool { state != .passing }

    /// True when the open epoch holds frames: a client waits for the next checkpoint.
    public var holdsOpenFrames: Bool { !open.isEmpty }

    /// A frame arrived from the guest.
    public mutating func guestFrame(_ frame: [UInt8]) -> GuestFrameAction {
        switch state {
        case .passing:
            statistics.passedFrames += 1
            statistics.passedBytes += UInt64(frame.count)
            return .send
        case .holding(let limit):
            guard statistics.heldBytes + frame.count <= limit else {
                statistics.droppedFrames += 1
                statistics.droppedBytes += UInt64(frame.count)
                return .drop
            }
            open.append(frame)
            statistics.heldFrames += 1
            statistics.heldBytes += frame.count
            return .hold
        }
    }

    /// Closes the open epoch as `epoch`: the frames read so far leave when `epoch` is acknowledged.
    /// Call with the guest paused, after its checkpoint state was captured. Epochs must increase
    /// strictly (gaps are allowed).
    public mutating func seal(epoch: UInt64) -> SealAction {
        if let last = statistics.lastSealedEpoch, epoch <= last { return .rejected(lastSealed: last) }
        statistics.lastSealedEpoch = epoch
        let count = open.count
        if count > 0 {
            sealed.append(SealedEpoch(epoch: epoch, frames: open))
            open.removeAll(keepingCapacity: true)
        }
        return .sealed(frames: count)
    }

    /// The backup acknowledged every checkpoint up to and including `epoch`.
    public mutating func acknowledged(through epoch: UInt64) -> AcknowledgeAction {
        if let last = statistics.lastReleasedEpoch, epoch <= last { return .alreadyReleased(lastReleased: last) }
        guard let lastSealed = statistics.lastSealedEpoch, epoch <= lastSealed else {
            // Everything sealed is older than the acknowledged epoch, hence covered by it.
            let frames = release(count: sealed.count)
            if let lastSealed = statistics.lastSealedEpoch { statistics.lastReleasedEpoch = lastSealed }
            return .unsealed(send: frames, lastSealed: statistics.lastSealedEpoch)
        }
        statistics.lastReleasedEpoch = epoch
        return .send(release(count: sealed.prefix { $0.epoch <= epoch }.count))
    }

    /// Removes the oldest `count` sealed epochs and returns their frames in order.
    private mutating func release(count: Int) -> [[UInt8]] {
        guard count > 0 else { return [] }
        var frames: [[UInt8]] = []
        for epoch in sealed.prefix(count) { frames += epoch.frames }
        sealed.removeFirst(count)
        let bytes = frames.reduce(0) { $0 + $1.count }
        statistics.heldFrames -= frames.count
        statistics.heldBytes -= bytes
        statistics.releasedFrames += UInt64(frames.count)
        statistics.releasedBytes += UInt64(bytes)
        return frames
    }
}
