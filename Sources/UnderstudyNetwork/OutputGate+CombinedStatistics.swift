extension OutputGateStateMachine.Statistics {
    /// The counters of two gates added up (a VM with several NICs has one per NIC). They are
    /// sealed and released together, so the epochs are the later of the two.
    public static func + (lhs: Self, rhs: Self) -> Self {
        var sum = lhs
        sum.heldFrames += rhs.heldFrames
        sum.heldBytes += rhs.heldBytes
        sum.droppedFrames += rhs.droppedFrames
        sum.droppedBytes += rhs.droppedBytes
        sum.releasedFrames += rhs.releasedFrames
        sum.releasedBytes += rhs.releasedBytes
        sum.passedFrames += rhs.passedFrames
        sum.passedBytes += rhs.passedBytes
        sum.lastSealedEpoch = [lhs.lastSealedEpoch, rhs.lastSealedEpoch].compactMap { $0 }.max()
        sum.lastReleasedEpoch = [lhs.lastReleasedEpoch, rhs.lastReleasedEpoch].compactMap { $0 }.max()
        return sum
    }
}

extension OutputGate.Statistics {
    /// The counters of two gates added up; connected only when both have their QEMU.
    public static func + (lhs: Self, rhs: Self) -> Self {
        var sum = lhs
        sum.buffer = lhs.buffer + rhs.buffer
        sum.sentFrames += rhs.sentFrames
        sum.sentBytes += rhs.sentBytes
        sum.sendDroppedFrames += rhs.sendDroppedFrames
        sum.sendDroppedBytes += rhs.sendDroppedBytes
        sum.fencedFrames += rhs.fencedFrames
        sum.fencedBytes += rhs.fencedBytes
        sum.framesToGuest += rhs.framesToGuest
        sum.bytesToGuest += rhs.bytesToGuest
        sum.framesToGuestDropped += rhs.framesToGuestDropped
        sum.guestConnections += rhs.guestConnections
        sum.malformedConnections += rhs.malformedConnections
        sum.guestConnected = lhs.guestConnected && rhs.guestConnected
        return sum
    }
}

extension GatePolicyStatistics {
    /// Two gates' counters of one policy added up, rule by rule. Rules are matched by position:
    /// both gates enforce the same policy (`GatePolicyControl` gives every gate each reload).
    public static func + (lhs: Self, rhs: Self) -> Self {
        var sum = lhs
        for index in sum.rules.indices where index < rhs.rules.count && sum.rules[index].rule == rhs.rules[index].rule {
            sum.rules[index].frames += rhs.rules[index].frames
            sum.rules[index].bytes += rhs.rules[index].bytes
            sum.rules[index].deniedFrames += rhs.rules[index].deniedFrames
        }
        sum.unmatchedFrames += rhs.unmatchedFrames
        sum.unmatchedBytes += rhs.unmatchedBytes
        return sum
    }
}
