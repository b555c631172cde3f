import Foundation
import UnderstudySystem

/// Polls `condition` every `interval` until it holds (true) or `timeout` passes (false, after a
/// last look). It blocks rather than awaits: with the cooperative pool as wide as the cores and
/// busy with other tests, a resumption after `Task.sleep` may come late and spoil the timing
/// being measured.
public func eventually(within timeout: Duration = .seconds(5), every interval: Duration = .milliseconds(10),
                       _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try condition() { return true }
        Thread.sleep(forTimeInterval: interval.seconds)
    }
    return try condition()
}
