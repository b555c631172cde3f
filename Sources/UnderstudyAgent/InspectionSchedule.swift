/// When the backup runs its scheduled inspections (`inspect.every_s`): on a grid of one interval
/// from the moment it became the backup, one at a time. A grid point that passes while an
/// inspection still runs is skipped, not made up, so a slow scan never queues more behind it.
/// Pure: the caller passes the time.
public struct InspectionSchedule: Sendable, Equatable {
    public let every: Duration
    /// When the next inspection starts.
    public private(set) var due: ContinuousClock.Instant
    public private(set) var isRunning = false

    /// The first inspection is due one interval after `start`: a backup that just started has no
    /// replica worth inspecting yet.
    public init(every: Duration, start: ContinuousClock.Instant) {
        self.every = every
        due = start + every
    }

    /// Whether an inspection starts at `now`; if so it is running until `finished`.
    public mutating func start(at now: ContinuousClock.Instant) -> Bool {
        guard !isRunning, now >= due else { return false }
        isRunning = true
        return true
    }

    /// The inspection ended at `now`: the next is due at the first grid point after it.
    public mutating func finished(at now: ContinuousClock.Instant) {
        isRunning = false
        guard now >= due else { return }
        let passed = Int(((now - due) / every).rounded(.down))
        due = due + every * (passed + 1)
    }

    /// How long to wait at `now` before asking `start` again.
    public func delay(at now: ContinuousClock.Instant) -> Duration {
        isRunning ? every : max(.zero, due - now)
    }
}
