import Foundation
import Testing
import UnderstudyHarness
import UnderstudyTestTags

/// Automatic failover, a hung primary, a cut replication link with re-protection, a planned
/// switchover and a killed backup, each checked like the consistency test: one active copy at
/// the end, the client's values strictly increasing, nothing it saw missing from the surviving
/// copy, disk and memory agreeing, a clean file system.
///
/// Trials per scenario: UNDERSTUDY_FAILOVER_TRIALS (default 2).
@Suite("failover scenarios", .serialized, .tags(.vm), .skippedInQuickLoop)
struct FailoverTests {
    static var trials: Int { Int(ProcessInfo.processInfo.environment["UNDERSTUDY_FAILOVER_TRIALS"] ?? "") ?? 2 }

    @Test(arguments: [ConsistencyHarness.Scenario.kill, .hang, .cutLinkThenKill, .cutLinkSafetyThenKill, .switchover, .backupKill, .wanSynchronousKill])
    func scenarioEndsWithOneActiveCopyAndNothingLost(_ scenario: ConsistencyHarness.Scenario) throws {
        try runTrials(of: scenario, count: Self.trials)
    }

    /// With a witness, a partition that isolates a running primary never leaves two active
    /// copies. Trials: UNDERSTUDY_PARTITION_TRIALS (default 10).
    @Test func partitionWithAWitnessNeverLeavesTwoActiveCopies() throws {
        try runTrials(of: .partitionWithWitness, count: Int(ProcessInfo.processInfo.environment["UNDERSTUDY_PARTITION_TRIALS"] ?? "") ?? 10)
    }

    /// With a witness, a primary host that freezes (agent and QEMU stopped) while the backup
    /// takes over, then continues, sends nothing more and becomes the backup.
    @Test func frozenPrimaryThatContinuesAfterTheTakeoverSendsNothing() throws {
        try runTrials(of: .stopThenContinue, count: Self.trials)
    }

    /// With a witness, an unprotected primary whose agent stalls past its lease sends nothing
    /// when it resumes, not even what waited in its gate: the backup is the active copy by then.
    /// Trials: UNDERSTUDY_STALL_TRIALS (default 2).
    @Test func stalledUnprotectedPrimarySendsNothingAfterTheTakeover() throws {
        try runTrials(of: .stallWhileUnprotected, count: Int(ProcessInfo.processInfo.environment["UNDERSTUDY_STALL_TRIALS"] ?? "") ?? 2)
    }

    private func runTrials(of scenario: ConsistencyHarness.Scenario, count: Int) throws {
        let harness = try ConsistencyHarness()
        defer { harness.remove() }
        for trial in 1...count {
            let outcome = try harness.run(trial: trial, buffering: true, scenario: scenario)
            #expect(outcome.violations.isEmpty, "\(scenario.rawValue), trial \(trial): \(outcome.violations) (\(outcome.summary))")
            #expect(outcome.problems.isEmpty, "\(scenario.rawValue), trial \(trial): \(outcome.problems) (\(outcome.summary))")
            print("\(scenario.rawValue), trial \(trial): \(outcome.summary)")
        }
    }
}
