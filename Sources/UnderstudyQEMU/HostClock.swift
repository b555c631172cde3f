#if canImport(Glibc)
import Glibc
#endif

/// The host clocks a pause is timed with: CLOCK_MONOTONIC is the one the preload library stamps
/// its pause-channel messages with (the same clock in every process), CLOCK_REALTIME the one
/// QEMU stamps its QMP events with, and the calling thread's CPU time tells a thread that ran
/// from one that waited for a core.
enum HostClock {
    static func monotonic() -> UInt64 { read(CLOCK_MONOTONIC) }

    static func threadCPU() -> UInt64 { read(CLOCK_THREAD_CPUTIME_ID) }

    /// A QMP event's wall-clock timestamp (seconds) on the monotonic clock.
    static func monotonic(fromRealtime seconds: Double) -> UInt64 {
        let offset = Int64(bitPattern: read(CLOCK_REALTIME)) - Int64(bitPattern: monotonic())
        return UInt64(max(0, Int64((seconds * 1e9).rounded()) - offset))
    }

    /// `later - earlier`, or zero when the clocks' rounding put them the other way round.
    static func span(from earlier: UInt64, to later: UInt64) -> Duration {
        later > earlier ? .nanoseconds(Int64(later - earlier)) : .zero
    }

    private static func read(_ clock: clockid_t) -> UInt64 {
        var time = timespec()
        clock_gettime(clock, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}
