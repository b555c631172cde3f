import UnderstudySystem

/// A token bucket that caps a byte stream's rate: `rate` bytes per second on average, with
/// bursts of at most `burst` bytes. A value with no clock of its own: the caller passes the time.
///
/// The bucket may go into debt: `take` always admits the bytes and says how long the caller must
/// wait before sending them, so a frame larger than the burst is still sent, just later.
public struct TokenBucket: Sendable, Equatable {
    /// Bytes per second, above zero.
    public let rate: Double
    /// Bytes that may leave back to back after a quiet spell.
    public let burst: Double
    private var tokens: Double
    private var updated: ContinuousClock.Instant

    public init(bytesPerSecond: Int, burst: Int? = nil, now: ContinuousClock.Instant) {
        precondition(bytesPerSecond > 0, "a rate cap must be positive")
        rate = Double(bytesPerSecond)
        // About 20 ms of the rate, and never less than a jumbo frame: small enough that the cap
        // holds over short windows, large enough that the sender thread does not wake per packet.
        self.burst = Double(burst ?? max(64 << 10, bytesPerSecond / 50))
        tokens = self.burst
        updated = now
    }

    /// Admits `bytes` and returns how long to wait before sending them (zero: send now).
    public mutating func take(_ bytes: Int, now: ContinuousClock.Instant) -> Duration {
        refill(now: now)
        tokens -= Double(bytes)
        guard tokens < 0 else { return .zero }
        return .nanoseconds(Int64((-tokens / rate * 1e9).rounded(.up)))
    }

    /// Takes `amount` only when the bucket holds that much, never going into debt; true when it
    /// did. For policing, where what is over the rate is dropped rather than delayed (the gate
    /// policy's rate limits count frames, not bytes: the units are the caller's).
    public mutating func takeIfAvailable(_ amount: Int, now: ContinuousClock.Instant) -> Bool {
        refill(now: now)
        guard tokens >= Double(amount) else { return false }
        tokens -= Double(amount)
        return true
    }

    private mutating func refill(now: ContinuousClock.Instant) {
        guard now > updated else { return }
        tokens = min(burst, tokens + (now - updated).seconds * rate)
        updated = now
    }
}
