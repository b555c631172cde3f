import Foundation

/// A callback whose target is set after the callback was handed out: QEMU's exit handler and
/// the witness's loss handler are fixed when those are created, before their owner exists.
final class CallbackRelay<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var target: (@Sendable (Value) -> Void)?

    func point(to target: @escaping @Sendable (Value) -> Void) { lock.withLock { self.target = target } }

    func forward(_ value: Value) { lock.withLock { target }?(value) }
}
