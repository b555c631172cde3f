import Foundation
import Logging
import Synchronization
import UnderstudySystem

/// The backup's scheduled inspections (`[inspect]` with `every_s`): a thread of its own follows the
/// `InspectionSchedule` and runs each `Inspection` on a snapshot it asks the receiver for directly,
/// as the control socket's `snapshot` command would. Results go to `status` and the metrics.
final class InspectionScheduler: Sendable {
    private let stop = StopSignal(signals: [])
    private let shared: Mutex<(schedule: InspectionSchedule, status: InspectionStatus)>
    private let thread = Mutex<JoinableThread?>(nil)

    /// Starts the thread; nil when the configuration schedules no inspections.
    init?(configuration: AgentConfiguration, receiver: BackupReceiver, metrics: AgentMetrics?, logger: Logger) {
        let settings = configuration.inspection
        guard let every = settings.every, let command = settings.command else { return nil }
        shared = Mutex((InspectionSchedule(every: every, start: .now), InspectionStatus(everySeconds: every.seconds, command: "\(command)")))
        thread.withLock { [self] in
            $0 = JoinableThread(name: "inspect-schedule") { [self] in
                while true {
                    let now = ContinuousClock.now
                    let (starts, delay) = shared.withLock { ($0.schedule.start(at: now), $0.schedule.delay(at: now)) }
                    if !starts {
                        if stop.wait(timeout: delay) { return }
                        continue
                    }
                    let report = Self.inspect(configuration: configuration, command: command, receiver: receiver, stop: stop, logger: logger)
                    metrics?.inspected(report)
                    let ended = ContinuousClock.now
                    shared.withLock {
                        $0.schedule.finished(at: ended)
                        $0.status.record(report)
                    }
                    if stop.isSet { return }
                }
            }
        }
    }

    /// One run; a run that could not start is a report that says why.
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

    /// The inspections so far and when the next is due.
    var status: InspectionStatus {
        let now = ContinuousClock.now
        return shared.withLock {
            var status = $0.status
            status.nextInSeconds = $0.schedule.isRunning ? 0 : $0.schedule.delay(at: now).seconds
            return status
        }
    }

    /// Stops a running command and the thread, and waits for both (and the clean-up). The command
    /// gets no grace (SIGKILL right after SIGTERM): the role is ending, and an activation waits.
    func close() {
        stop.trigger(.requested(nil))
        thread.withLock { $0.take() }?.join()
    }
}
