import Synchronization
import UnderstudySystem

/// The first error a background thread hit, readable from other threads.
final class ErrorSlot: Sendable {
    private let slot = Mutex<TransportError?>(nil)

    func record(_ error: TransportError) { slot.withLock { if $0 == nil { $0 = error } } }
    var value: TransportError? { slot.withLock { $0 } }
}
