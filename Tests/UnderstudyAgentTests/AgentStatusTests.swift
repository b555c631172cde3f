import Foundation
import Testing
import UnderstudyAgent

@Suite("agent status")
struct AgentStatusTests {
    /// After re-protection a session starts at the epoch after the last one captured, so its
    /// count of checkpoints sent is far below the epoch numbers it sends and commits.
    @Test func currentEpochIsTheNewestEpochSentNotTheSessionsCount() {
        var statistics = PrimaryStatistics()
        statistics.checkpointsSent = 3
        statistics.currentEpoch = 43
        statistics.lastAcknowledgedEpoch = 42
        let status = AgentStatus.primary(vm: "v", state: "protecting", statistics: statistics, dirtyTracking: "pagemap")
        #expect(status.currentEpoch == 43)
        #expect(status.currentEpoch ?? 0 >= status.committedEpoch ?? 0)
    }
}
