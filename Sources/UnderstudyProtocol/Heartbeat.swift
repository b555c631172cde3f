/// Liveness and round-trip probe; any frame counts as a sign of life.
public struct Heartbeat: Sendable, Equatable {
    public var sequence: UInt64
    /// Sender's monotonic clock in nanoseconds (only meaningful to the sender).
    public var senderTime: UInt64

    public init(sequence: UInt64, senderTime: UInt64) {
        self.sequence = sequence
        self.senderTime = senderTime
    }
}
