import UnderstudyProtocol

extension PrimaryReplicator {
    /// For the output gate's input observer while this session runs (`OutputGate.observeGuestInput`):
    /// sends the backup a copy of each frame the guest receives (GUEST_INPUT), so that a takeover
    /// gives the resumed guest what its checkpoint may lack. Never waits: a frame that finds the
    /// send queue full is dropped (then the client's retransmission covers it, as without replay).
    /// Nil when the backup did not agree to input-replay, or before `start`.
    public var guestInputForwarder: (@Sendable (_ epoch: UInt64, _ frame: [UInt8]) -> Void)? {
        guard agreedCapabilities.contains(.inputReplay), let sender else { return nil }
        return { epoch, frame in _ = sender.offer(Message.guestInput(epoch: epoch, frame: frame).frame) }
    }
}
