import Foundation
import UnderstudyProtocol
import UnderstudySystem
import UnderstudyTransport

/// The `PrimarySession` shared by the primary's threads (the checkpoint loop, `primary-recv`,
/// `primary-heartbeat`, the encoder's workers): under one lock with the session's failure, and
/// with waits for room in the window, for acknowledgements and for the failure.
final class SessionGuard: @unchecked Sendable {
    struct Protected {
        var session: PrimarySession
        /// Why the session ended; nil while it runs.
        var failure: Error?
    }

    private let condition = NSCondition()
    private var protected: Protected

    init(_ session: PrimarySession) {
        protected = Protected(session: session)
    }

    func withLock<T>(_ body: (inout Protected) throws -> T) rethrows -> T {
        condition.lock()
        defer { condition.unlock() }
        return try body(&protected)
    }

    /// Records an acknowledgement and wakes the loop waiting for room in the window or a drain.
    func acknowledge(through epoch: UInt64, at now: ContinuousClock.Instant) -> PrimarySession.Acknowledgement {
        defer { condition.broadcast() }
        return withLock { $0.session.acknowledged(through: epoch, now: now) }
    }

    /// Ends the session (the first failure is the one reported) and wakes every wait.
    func fail(_ error: Error) {
        withLock { p in
            if p.failure == nil { p.failure = error }
            p.session.end()
        }
        condition.broadcast()
    }

    /// Waits until the session fails or `timeout` passes; returns the failure, if any.
    func waitForFailure(timeout: Duration) -> Error? {
        let deadline = Date(timeIntervalSinceNow: timeout.seconds)
        condition.lock()
        defer { condition.unlock() }
        while protected.failure == nil, condition.wait(until: deadline) {}
        return protected.failure
    }

    /// Waits for room in the window; returns the next epoch number, and whether it had to wait
    /// (backpressure: the link, not the interval, set the pace).
    func waitForWindow() throws -> (epoch: UInt64, waited: Bool) {
        condition.lock()
        defer { condition.unlock() }
        var waited = false
        while true {
            if let failure = protected.failure { throw failure }
            if protected.session.canSendCheckpoint { return (protected.session.nextEpoch, waited) }
            waited = true
            condition.wait()
        }
    }

    func waitUntilDrained(timeout: Duration) throws {
        let deadline = Date(timeIntervalSinceNow: timeout.seconds)
        condition.lock()
        defer { condition.unlock() }
        while protected.session.unacknowledged > 0 {
            if let failure = protected.failure { throw failure }
            if !condition.wait(until: deadline) {
                throw TransportError.timedOut("\(protected.session.unacknowledged) checkpoints still unacknowledged after \(timeout)")
            }
        }
    }
}
