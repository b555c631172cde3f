import Foundation
import Logging
import Synchronization
import UnderstudySystem

/// The backup's scheduled work on its replica: inspections (`[inspect]` with `every_s`) and drills
/// (`drill.every`). One thread of its own follows a `PeriodicSchedule` per job and runs one job at
/// a time, so a drill and an inspection never run together on one backup (each copies the replica
/// and costs CPU beside replication): one that falls due while the other runs starts when it ends.
/// Each takes its snapshot from the receiver directly, as the control socket's `snapshot` command
/// would. A drill also needs one of the host's drill slots (`HostSlots`, `fleet.drills_at_once`):
/// without a free one it is put off and tried again shortly, and the inspections go on meanwhile.
/// Results go to `status` and the metrics.
final class BackupScheduler: Sendable {
    enum Job: Int, CaseIterable {
        case inspection, drill
    }

    /// How soon a drill that found every host slot taken tries again (at most one interval).
    static let slotRetry: Duration = .seconds(30)

    private let stop = StopSignal(signals: [])
    private let shared: Mutex<State>
    private let thread = Mutex<JoinableThread?>(nil)
    /// The running drill's own stop: the drill triggers it when its clone exits, which must not end the schedule.
    private let drillStop = Mutex<StopSignal?>(nil)

    private struct State {
        /// Indexed by `Job.rawValue`; nil for a job not scheduled.
        var schedules: [PeriodicSchedule?]
        var inspection: InspectionStatus?
        var drills: DrillStatus?
        var lastDrill: DrillOutcome?
    }

    /// Starts the thread; nil when the configuration schedules neither inspections nor drills.
    init?(configuration: AgentConfiguration, receiver: BackupReceiver, metrics: AgentMetrics?, logger: Logger) {
        let start = ContinuousClock.now
        var state = State(schedules: Array(repeating: nil, count: Job.allCases.count))
        if let every = configuration.inspection.every, let command = configuration.inspection.command {
            state.schedules[Job.inspection.rawValue] = PeriodicSchedule(every: every, start: start)
            state.inspection = InspectionStatus(everySeconds: every.seconds, command: "\(command)")
        }
        if let every = configuration.drill.every, let probe = configuration.drill.probe {
            state.schedules[Job.drill.rawValue] = PeriodicSchedule(every: every, start: start)
            state.drills = DrillStatus(everySeconds: every.seconds, probe: "\(probe)", since: Date().timeIntervalSince1970)
        }
        guard state.schedules.contains(where: { $0 != nil }) else { return nil }
        shared = Mutex(state)
        thread.withLock { [self] in
            $0 = JoinableThread(name: "backup-schedule") { [self] in
                while !stop.isSet {
                    let now = ContinuousClock.now
                    let (job, delay) = shared.withLock { state -> (Job?, Duration) in
                        let delay = state.schedules.compactMap { $0?.delay(at: now) }.min() ?? .seconds(60)
                        guard let index = PeriodicSchedule.next(of: state.schedules, at: now) else { return (nil, delay) }
                        _ = state.schedules[index]?.start(at: now)
                        return (Job(rawValue: index), delay)
                    }
                    guard let job else {
                        if stop.wait(timeout: delay) { return }
                        continue
                    }
                    switch job {
                    case .inspection: runInspection(configuration: configuration, receiver: receiver, metrics: metrics, logger: logger)
                    case .drill: runDrill(configuration: configuration, receiver: receiver, metrics: metrics, logger: logger)
                    }
                }
            }
        }
    }

    private func runInspection(configuration: AgentConfiguration, receiver: BackupReceiver, metrics: AgentMetrics?, logger: Logger) {
        guard let command = configuration.inspection.command else { return }
        let report = Self.inspect(configuration: configuration, command: command, receiver: receiver, stop: stop, logger: logger)
        metrics?.inspected(report)
        let ended = ContinuousClock.now
        shared.withLock {
            $0.schedules[Job.inspection.rawValue]?.finished(at: ended)
            $0.inspection?.record(report)
        }
    }

    private func runDrill(configuration: AgentConfiguration, receiver: BackupReceiver, metrics: AgentMetrics?, logger: Logger) {
        let settings = configuration.drill
        guard let probe = settings.probe, let every = settings.every else { return }
        let slots = HostSlots(directory: settings.slotDirectory, count: settings.drillsAtOnce)
        let slot: HostSlots.Slot
        do {
            guard let taken = try slots.tryTake() else {
                let retry = ContinuousClock.now + min(every, Self.slotRetry)
                let why = "all \(settings.drillsAtOnce) drill slot(s) of this host (\(settings.slotDirectory)) are taken by other drills"
                logger.info("scheduled drill put off", metadata: ["reason": "\(why)"])
                shared.withLock {
                    $0.schedules[Job.drill.rawValue]?.postpone(until: retry)
                    $0.drills?.waiting = why
                }
                return
            }
            slot = taken
        } catch {
            // A slot directory that cannot be used is a failed drill: the operator must hear of it.
            record(DrillOutcome(at: Date().timeIntervalSince1970, passed: false, reason: "no drill slot: \(error)", probe: "\(probe)"),
                   metrics: metrics)
            return
        }
        defer { slot.release() }
        let started = Date().timeIntervalSince1970
        let own = StopSignal(signals: [])
        drillStop.withLock { $0 = own }
        if stop.isSet { own.trigger(.requested(nil)) }
        defer { drillStop.withLock { $0 = nil } }
        let outcome: DrillOutcome
        do {
            let report = try Drill.run(configuration: configuration, probe: probe, timeout: settings.timeout, stop: own, logger: logger) { directory in
                (try receiver.snapshot(into: directory, memory: true), "backup agent")
            }
            outcome = DrillOutcome(report, at: started)
        } catch {
            outcome = DrillOutcome(at: started, passed: false, reason: "the drill could not run: \(error)", probe: "\(probe)")
        }
        let level: Logger.Level = outcome.passed ? .notice : .error
        logger.log(level: level, "scheduled drill \(outcome.passed ? "passed" : "FAILED")", metadata: [
            "slot": "\(slot.index)", "epoch": "\(outcome.epoch ?? 0)", "recovery-ms": "\(outcome.recoveryMs.map { "\(Int($0))" } ?? "-")",
            "reason": "\(outcome.reason)",
        ])
        record(outcome, metrics: metrics)
    }

    private func record(_ outcome: DrillOutcome, metrics: AgentMetrics?) {
        metrics?.drilled(outcome)
        let ended = ContinuousClock.now
        shared.withLock {
            $0.schedules[Job.drill.rawValue]?.finished(at: ended)
            $0.drills?.record(outcome)
            $0.lastDrill = outcome
        }
    }

    /// One inspection; a run that could not start is a report that says why.
    private static func inspect(configuration: AgentConfiguration, command: InspectionCommand, receiver: BackupReceiver, stop: StopSignal,
                                logger: Logger) -> InspectionReport {
        let started = Date().timeIntervalSince1970
        let clock = ContinuousClock.now
        do {
            let report = try Inspection.run(configuration: configuration, command: command, memory: configuration.inspection.memory,
                                            timeout: configuration.inspection.timeout, stop: stop, killAfter: .zero,
                                            logger: logger) { directory in
                (try receiver.snapshot(into: directory, memory: configuration.inspection.memory), "backup agent")
            }
            let level: Logger.Level = report.ok ? .notice : .warning
            logger.log(level: level, "scheduled inspection finished", metadata: [
                "epoch": "\(report.epoch ?? 0)", "exit-status": "\(report.exitStatus ?? -1)", "ms": "\(Int(report.durationMs))",
                "message": "\(report.message)",
            ])
            return report
        } catch {
            logger.warning("scheduled inspection could not run", metadata: ["error": "\(error)"])
            return InspectionReport(ok: false, message: "\(error)", vm: configuration.vm.id, command: "\(command)", startedAt: started,
                                    durationMs: (ContinuousClock.now - clock).seconds * 1000)
        }
    }

    /// The scheduled inspections so far and when the next is due (nil: none scheduled).
    var inspection: InspectionStatus? { current.inspection }

    /// The scheduled drills, the last one's outcome, and what about them is alert-worthy.
    var drills: (status: DrillStatus?, last: DrillOutcome?, problems: [String]) {
        let state = current
        return (state.drills, state.lastDrill, state.drills?.problems(last: state.lastDrill, now: Date().timeIntervalSince1970) ?? [])
    }

    /// The state, each job's status saying how soon it runs next (0 while it runs).
    private var current: State {
        let now = ContinuousClock.now
        return shared.withLock { state in
            var copy = state
            func next(_ job: Job) -> Double? {
                state.schedules[job.rawValue].map { $0.isRunning ? 0 : $0.delay(at: now).seconds }
            }
            copy.inspection?.nextInSeconds = next(.inspection)
            copy.drills?.nextInSeconds = next(.drill)
            return copy
        }
    }

    /// Stops a running job and the thread, and waits for both (and the clean-up). An inspection's
    /// command gets no grace (SIGKILL right after SIGTERM): the role is ending, and an activation waits.
    func close() {
        stop.trigger(.requested(nil))
        drillStop.withLock { $0 }?.trigger(.requested(nil))
        thread.withLock { $0.take() }?.join()
    }
}
