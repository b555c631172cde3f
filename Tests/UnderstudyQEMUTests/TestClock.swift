import Synchronization

/// A CLOCK_MONOTONIC stand-in that tests move by hand.
final class TestClock: Sendable {
    private let nanoseconds = Atomic<UInt64>(1_000_000_000)

    func advance(_ duration: Duration) {
        nanoseconds.add(UInt64(duration.components.seconds) * 1_000_000_000, ordering: .relaxed)
    }

    var read: @Sendable () -> UInt64 { { [self] in nanoseconds.load(ordering: .relaxed) } }
}
