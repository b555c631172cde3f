/// When the backup runs a recurring job, scheduled inspections (`inspect.every_s`) or drills
/// (`drill.every`): on a grid of one interval from the moment it became the backup, one at a time.
/// A grid point that passes while the job still runs is skipped, not made up, so a slow run never
/// queues more behind it. A start can be put off (a drill that found no free slot on the host)
/// without moving the grid. Pure: the caller passes the time.
public struct PeriodicSchedule: Sendable, Equatable {
    public let every: Duration
    /// When the next run is due.
    public private(set) var due: ContinuousClock.Instant
    public private(set) var isRunning = false
    /// A due run put off: it starts no earlier than this.
    public private(set) var postponedUntil: ContinuousClock.Instant?

    /// The first run is due one interval after `start`: a backup that just started has no
    /// replica worth inspecting or drilling yet.
    public init(every: Duration, start: ContinuousClock.Instant) {
        self.every = every
        due = start + every
    }

    /// Whether a run may start at `now`.
    public func isDue(at now: ContinuousClock.Instant) -> Bool {
        !isRunning && now >= due && now >= postponedUntil ?? now
    }

    /// Whether a run starts at `now`; if so it is running until `finished`.
    public mutating func start(at now: ContinuousClock.Instant) -> Bool {
        guard isDue(at: now) else { return false }
        isRunning = true
        return true
    }

    /// The run that `start` began did not run after all: it is tried again at `retry`, and the
    /// grid stays where it was.
    public mutating func postpone(until retry: ContinuousClock.Instant) {
        isRunning = false
        postponedUntil = retry
    }

    /// The run ended at `now`: the next is due at the first grid point after it.
    public mutating func finished(at now: ContinuousClock.Instant) {
        isRunning = false
        postponedUntil = nil
        guard now >= due else { return }
        let passed = Int(((now - due) / every).rounded(.down))
        due = due + every * (passed + 1)
    }

    /// How long to wait at `now` before asking `start` again.
    public func delay(at now: ContinuousClock.Instant) -> Duration {
        isRunning ? every : max(.zero, max(due, postponedUntil ?? due) - now)
    }

    /// Of schedules whose jobs share one runner (one at a time; nil: a job not scheduled), the
    /// one to start at `now`: the longest overdue of those due, so that neither job can keep the
    /// other from running.
    public static func next(of schedules: [PeriodicSchedule?], at now: ContinuousClock.Instant) -> Int? {
        let due = schedules.indices.compactMap { index in schedules[index].flatMap { $0.isDue(at: now) ? (index, $0.due) : nil } }
        return due.min { $0.1 < $1.1 }?.0
    }
}
