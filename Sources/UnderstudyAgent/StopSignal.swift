import Foundation
import Synchronization
import UnixSignals
import UnderstudySystem

/// The agent's stop: one reason (the first wins) that its loops poll and its threads can wait
/// for. Commands that run outside a service group (`demo`, `drill`) let it trap SIGINT and
/// SIGTERM itself; the daemon's service group turns those into a graceful shutdown instead.
public final class StopSignal: @unchecked Sendable {
    private let latch = Latch()
    private let first = Mutex<StopReason?>(nil)
    /// Held so that the signal sources live as long as the stop.
    private var sources: [DispatchSourceSignal] = []

    /// - Parameter signals: the signals that trigger it with `.requested(signal)`; none for a
    ///   stop that only `trigger` sets.
    public init(signals: [UnixSignal] = [.sigint, .sigterm]) {
        for unixSignal in signals {
            signal(unixSignal.rawValue, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: unixSignal.rawValue, queue: .global())
            source.setEventHandler { [weak self] in self?.trigger(.requested(unixSignal)) }
            source.resume()
            sources.append(source)
        }
    }

    /// Records why the agent stops (the first reason wins) and wakes waiters.
    public func trigger(_ reason: StopReason) {
        first.withLock { if $0 == nil { $0 = reason } }
        latch.trigger()
    }

    public var isSet: Bool { latch.isSet }

    /// Why the agent stops; nil while it runs.
    public var reason: StopReason? { first.withLock { $0 } }

    /// Blocks until `trigger` is called or `timeout` passes; true when triggered.
    public func wait(timeout: Duration) -> Bool { latch.wait(timeout: timeout) }

    /// Blocks until `trigger` is called; returns the reason.
    @discardableResult
    public func wait() -> StopReason {
        latch.wait()
        return reason!
    }
}
