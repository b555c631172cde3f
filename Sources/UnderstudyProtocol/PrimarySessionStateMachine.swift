/// The primary's side of one replication session, as a value with no I/O.
///
/// It tracks the handshake, the initial sync and the window of checkpoints sent but not yet
/// acknowledged. Acknowledgements are cumulative and must name an epoch in flight; the returned
/// `.release` is what allows output of those epochs to leave (output commit).
public struct PrimarySessionStateMachine: Sendable {
    public enum Action: Sendable, Equatable {
        /// The backup accepted: run the initial sync with these capabilities.
        case startSync(Capabilities, backupCommittedEpoch: UInt64)
        /// Epochs up to and including this one are acknowledged.
        case release(throughEpoch: UInt64)
        case heartbeat(Heartbeat)
        /// The backup sent back one of our heartbeats (heartbeat-echo): a round trip ended.
        case heartbeatEcho(Heartbeat)
        /// The backup ended or refused the session.
        case peerClosed(SessionClose)
        /// The backup broke the protocol: send GOODBYE with this error and close.
        case close(ProtocolError)
    }

    enum State: Sendable {
        case awaitingWelcome
        case syncing
        case protecting
        case closed
    }

    public let identity: VMIdentity
    public let maxEpochsInFlight: Int
    private(set) var state: State = .awaitingWelcome
    /// Epochs sent and not yet acknowledged, oldest first.
    public private(set) var inFlight: [UInt64] = []
    /// The last epoch handed to `checkpointSent`.
    public private(set) var lastSentEpoch: UInt64
    public private(set) var lastAcknowledgedEpoch: UInt64?
    /// What the backup's WELCOME agreed; empty before it.
    public private(set) var agreedCapabilities: Capabilities = []

    /// - Parameter firstEpoch: the number the first checkpoint of this session will carry.
    public init(identity: VMIdentity, maxEpochsInFlight: Int, firstEpoch: UInt64 = 1) {
        precondition(maxEpochsInFlight > 0 && firstEpoch > 0)
        self.identity = identity
        self.maxEpochsInFlight = maxEpochsInFlight
        self.lastSentEpoch = firstEpoch - 1
    }

    public var isClosed: Bool { if case .closed = state { true } else { false } }
    public var isProtecting: Bool { if case .protecting = state { true } else { false } }

    /// True when another checkpoint may be sent now; false means backpressure.
    public var canSendCheckpoint: Bool { isProtecting && inFlight.count < maxEpochsInFlight }

    /// The next epoch number to use.
    public var nextEpoch: UInt64 { lastSentEpoch + 1 }

    /// The initial sync, or the catch-up's CATCH_UP_BEGIN, was sent: checkpoints may follow.
    public mutating func syncFinished() {
        precondition(state == .syncing, "sync finished while \(state)")
        state = .protecting
    }

    /// Records that checkpoint `epoch` (which must be `nextEpoch`) was handed to the transport.
    public mutating func checkpointSent(_ epoch: UInt64) {
        precondition(canSendCheckpoint && epoch == nextEpoch, "checkpoint \(epoch) sent out of turn")
        inFlight.append(epoch)
        lastSentEpoch = epoch
    }

    public mutating func received(_ frame: Frame) -> Action {
        if case .closed = state { return .close(.unexpected("\(frame.type) after the session ended")) }
        let message: Message
        do {
            message = try Message(frame: frame, identity: identity)
        } catch {
            return fail(error)
        }
        switch (state, message) {
        case (.awaitingWelcome, .welcome(let welcome)):
            guard welcome.version == understudyProtocolVersion else {
                return fail(.versionMismatch(local: understudyProtocolVersion, remote: welcome.version))
            }
            state = .syncing
            agreedCapabilities = welcome.capabilities
            return .startSync(welcome.capabilities, backupCommittedEpoch: welcome.committedEpoch)
        case (.awaitingWelcome, .reject(let close)):
            state = .closed
            return .peerClosed(close)
        case (_, .goodbye(let close)):
            state = .closed
            return .peerClosed(close)
        case (.awaitingWelcome, _):
            return fail(.unexpected("\(frame.type) before WELCOME"))
        case (_, .heartbeat(let beat)):
            return .heartbeat(beat)
        case (_, .heartbeatEcho) where !agreedCapabilities.contains(.heartbeatEcho):
            return fail(.unexpected("heartbeat echo, but the session did not agree on the heartbeat-echo capability"))
        case (_, .heartbeatEcho(let beat)):
            return .heartbeatEcho(beat)
        case (.protecting, .ack(let epoch)):
            guard let position = inFlight.firstIndex(of: epoch) else {
                let detail = if let acked = lastAcknowledgedEpoch, epoch <= acked { "was already acknowledged" } else { "was never sent" }
                return fail(.unexpected("ACK for epoch \(epoch), which \(detail)"))
            }
            inFlight.removeFirst(position + 1)
            lastAcknowledgedEpoch = epoch
            return .release(throughEpoch: epoch)
        default:
            return fail(.unexpected("\(frame.type) while \(state)"))
        }
    }

    /// The I/O layer failed: the session is over.
    public mutating func abort() { state = .closed }

    private mutating func fail(_ error: ProtocolError) -> Action {
        state = .closed
        return .close(error)
    }
}
