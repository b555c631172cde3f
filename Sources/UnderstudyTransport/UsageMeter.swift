import Synchronization

/// `FrameSender.Usage`, added to by the sender thread and read by others.
final class UsageMeter: Sendable {
    private let usage = Mutex(FrameSender.Usage())

    func add(bytes: Int, busy: Duration) {
        usage.withLock {
            $0.bytes += bytes
            $0.busy += busy
        }
    }

    var value: FrameSender.Usage { usage.withLock { $0 } }
}
