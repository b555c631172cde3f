import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import UnderstudyHarness
import UnderstudySystem

/// The soak (issue 19, item 10): `count` trials on the counter guest, each a fault drawn from
/// `seed` (`SoakKind`), each checked by `ConsistencyHarness` for lost or repeated output, two
/// active copies, the client's connection, a clean file system and the failover time.
///
/// The report is rewritten after every trial, so a soak stopped early (SIGINT or SIGTERM: it
/// finishes the trial under way, then cleans up) still leaves the trials it ran.
struct SoakBench {
    let count: Int
    let seed: UInt64
    let output: String

    func run() throws -> SoakReport {
        let stop = WaitableFlag()
        let signals = [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                log("signal \(number): stopping after the trial under way")
                stop.set(true)
            }
            source.resume()
            return source
        }
        defer { signals.forEach { $0.cancel() } }

        let kinds = SoakKind.draw(count: count, seed: seed)
        let logs = (output as NSString).deletingLastPathComponent.appending("/soak-logs")
        let harness = try ConsistencyHarness(seed: seed, keptLogs: logs)
        defer { harness.remove() }
        let started = ContinuousClock.now
        var trials: [SoakTrial] = []
        var report = SoakReport(seed: seed, durationSeconds: 0, trials: [])
        log("soak: \(count) trials, seed \(seed), failed trials' logs into \(logs)")
        for (index, kind) in kinds.enumerated() where !stop.isSet {
            let trialStarted = ContinuousClock.now
            var outcome: ConsistencyHarness.Outcome
            do {
                outcome = try harness.run(trial: index + 1, buffering: true, scenario: kind.scenario)
            } catch {
                outcome = ConsistencyHarness.Outcome()
                outcome.problems.append("the trial failed to run: \(error)")
            }
            let trial = SoakTrial(trial: index + 1, kind: kind, outcome: outcome, seconds: (ContinuousClock.now - trialStarted).seconds)
            trials.append(trial)
            log("soak trial \(trial.trial)/\(count) \(kind.rawValue): \(trial.passed ? "ok" : "FAILED") "
                + "failover \(trial.failoverMilliseconds.map { "\(Int($0)) ms" } ?? "-"), \(trial.summary)"
                + (trial.passed ? "" : " violations \(trial.violations) problems \(trial.problems)"))
            report = SoakReport(seed: seed, durationSeconds: (ContinuousClock.now - started).seconds, trials: trials)
            try write(report)
        }
        return report
    }

    private func write(_ report: SoakReport) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let url = URL(fileURLWithPath: output)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try encoder.encode(report).write(to: url, options: .atomic)
    }
}

private func log(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }
