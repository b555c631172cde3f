import Foundation
import Testing
import UnderstudyHarness

/// The soak's draw of faults and its summary, without a VM.
@Suite("soak draw and report")
struct SoakReportTests {
    @Test func theSameSeedDrawsTheSameKindsAndEveryRoundHoldsEachKindOnce() {
        let kinds = SoakKind.draw(count: 200, seed: 42)
        #expect(kinds.count == 200)
        #expect(kinds == SoakKind.draw(count: 200, seed: 42))
        #expect(kinds != SoakKind.draw(count: 200, seed: 43))
        let round = SoakKind.allCases.count
        for start in stride(from: 0, to: kinds.count - round + 1, by: round) {
            #expect(Set(kinds[start..<(start + round)]) == Set(SoakKind.allCases), "round at \(start)")
        }
        // A soak of 12 meets every kind twice.
        let twelve = SoakKind.draw(count: 12, seed: 7)
        #expect(SoakKind.allCases.allSatisfy { kind in twelve.filter { $0 == kind }.count == 2 })
        // Not the same order in every round.
        #expect(Set(stride(from: 0, to: 198, by: round).map { Array(kinds[$0..<($0 + round)]) }).count > 1)
    }

    @Test func theReportCountsTrialsWithEachLossAndTakesPercentilesOverTrialsThatMovedTheVM() throws {
        func trial(_ number: Int, _ kind: SoakKind, failover: Double?, configure: (inout ConsistencyHarness.Outcome) -> Void = { _ in }) -> SoakTrial {
            var outcome = ConsistencyHarness.Outcome()
            outcome.connectionSurvived = true
            outcome.fsckClean = true
            outcome.failoverMilliseconds = failover
            configure(&outcome)
            return SoakTrial(trial: number, kind: kind, outcome: outcome, seconds: 30)
        }
        let trials = [
            trial(1, .sigkillPrimary, failover: 1200),
            trial(2, .sigkillPrimary, failover: 1400) { $0.lostAcknowledgedOutput = 3; $0.violations = ["lost"] },
            trial(3, .switchover, failover: 300) { $0.counterRegressions = 2 },
            trial(4, .witnessPartition, failover: 2500) { $0.twoActiveCopies = true; $0.connectionSurvived = false },
            // A backup kill moves nothing: its outage is no failover time.
            trial(5, .backupKill, failover: 9000),
            trial(6, .sigstopPrimary, failover: nil) { $0.fsckClean = nil; $0.problems = ["never answered"] },
        ]
        let report = SoakReport(seed: 9, durationSeconds: 180, trials: trials)
        #expect(report.trials == 6)
        #expect(report.byKind == ["sigkill_primary": 2, "switchover": 1, "witness_partition": 1, "backup_kill": 1, "sigstop_primary": 1])
        #expect(report.lostAcknowledgedOutput == 1)
        #expect(report.counterRegressions == 1)
        #expect(report.twoActiveCopies == 1)
        #expect(report.connectionSurvived == 5)
        #expect(report.fsckClean == 5)
        #expect(report.failoverMillisecondsP50 == 1200)
        #expect(report.failoverMillisecondsP99 == 2500)
        #expect(!trials[1].passed && trials[0].passed && !trials[5].passed)

        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(report)) as! [String: Any]
        #expect(Set(json.keys) == ["trials", "by_kind", "lost_acknowledged_output", "counter_regressions", "two_active_copies",
                                   "connection_survived", "fsck_clean", "failover_ms_p50", "failover_ms_p99",
                                   "seed", "duration_s", "per_trial"])
        let first = try #require((json["per_trial"] as? [[String: Any]])?.first)
        #expect(first["kind"] as? String == "sigkill_primary")
        #expect(first["failover_ms"] as? Double == 1200)
    }
}
