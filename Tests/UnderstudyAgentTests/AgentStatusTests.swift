import Foundation
import Testing
import UnderstudyAgent
import UnderstudyProtocol

/// `understudy status --json` is read by scripts: its field names and values stay as they were
/// when the status was one flat structure.
@Suite("agent status")
struct AgentStatusTests {
    static func object(_ status: AgentStatus) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: ControlServer.encode(status)) as? [String: Any])
    }

    static let primaryKeys: Set<String> = [
        "role", "vm", "state", "detail", "currentEpoch", "committedEpoch", "checkpointsPerSecond", "checkpointsForOutput",
        "checkpointsForInterval", "checkpointsForCatchUp", "pauseMillisecondsP50",
        "pauseMillisecondsP99", "pauseMillisecondsMax", "dirtyPagesPerCheckpoint", "rawBytes", "wireBytes", "ackLatencyMillisecondsP50",
        "ackLatencyMillisecondsP99", "dirtyTracking", "syncPages", "sessions", "outputHeldFrames", "outputHeldBytes", "outputDroppedFrames",
        "outputReleasedFrames", "outputFencedFrames", "outputMode", "syncBytesDone", "syncBytesTotal", "syncBytesPerSecond", "syncSecondsLeft",
        "diskPendingBytes", "diskWrites", "diskFlushes", "activatedFromEpoch", "fence", "protectionMode", "intervalMilliseconds",
        "intervalReason", "checkpointDemandBytesPerSecond", "linkBudgetBytesPerSecond", "lagMilliseconds", "lagMillisecondsP50",
        "lagMillisecondsP99", "recoveryPointObjectiveMilliseconds", "recoveryPointExceeded", "guestThrottle", "sessionStart",
        "catchUpPages", "catchUpDiskWrites", "catchUpWireBytes", "catchUpSeconds", "catchUpJournalBytes",
    ]

    /// A primary with every field set: from a session's statistics, then what the protector adds.
    static var primary: PrimaryStatus {
        var statistics = PrimaryStatistics()
        statistics.checkpointsSent = 3
        statistics.currentEpoch = 43
        statistics.lastAcknowledgedEpoch = 42
        statistics.rawBytes = 4096
        statistics.wireBytes = 1024
        statistics.syncPages = 100
        statistics.syncBytesDone = 1000
        statistics.syncBytesTotal = 4000
        statistics.syncStarted = .now - .seconds(1)
        statistics.interval = CheckpointIntervalController.Decision(interval: .milliseconds(400), reason: .fitted,
                                                                    demandBytesPerSecond: 1_500_000, budgetBytesPerSecond: 2_000_000)
        statistics.lag = .milliseconds(600)
        statistics.lagPeaks = [.milliseconds(300)]
        statistics.recoveryPointExceeded = false
        statistics.throttle = 0
        statistics.start = .catchUp(base: 40)
        statistics.catchUpPages = 12
        statistics.catchUpDiskWrites = 3
        statistics.catchUpWireBytes = 2048
        statistics.catchUpDuration = .milliseconds(150)
        var status = PrimaryStatus(vm: "web-1", state: .switchingOver, detail: "final checkpoint")
        status.add(statistics: statistics)
        status.dirtyTracking = "pagemap"
        status.sessions = 2
        status.fence = "none"
        status.protectionMode = "asynchronous"
        status.recoveryPointObjectiveMilliseconds = 2000
        status.catchUpJournalBytes = 0
        status.activatedFromEpoch = 7
        status.outputHeldFrames = 1
        status.outputHeldBytes = 60
        status.outputDroppedFrames = 0
        status.outputReleasedFrames = 9
        status.outputFencedFrames = 0
        status.outputMode = "output commit"
        status.diskPendingBytes = 512
        status.diskWrites = 5
        status.diskFlushes = 1
        return status
    }

    @Test func aPrimaryKeepsItsFieldNamesAndValues() throws {
        let object = try Self.object(.primary(Self.primary))
        #expect(Set(object.keys) == Self.primaryKeys, "\(Set(object.keys).symmetricDifference(Self.primaryKeys))")
        #expect(object["role"] as? String == "primary")
        #expect(object["vm"] as? String == "web-1")
        #expect(object["state"] as? String == "switching over")
        #expect(object["detail"] as? String == "final checkpoint")
        #expect(object["currentEpoch"] as? Int == 43 && object["committedEpoch"] as? Int == 42)
        #expect(object["sessionStart"] as? String == "catch-up from checkpoint 40")
        #expect(object["outputMode"] as? String == "output commit")
        #expect(object["activatedFromEpoch"] as? Int == 7)
    }

    @Test func aCatchUpInFlightShowsItsProgressLikeTheInitialSync() throws {
        var statistics = PrimaryStatistics()
        statistics.start = .catchUp(base: 683)
        statistics.catchUpStarted = .now - .seconds(2)
        statistics.catchUpBytesSent = 4_000_000
        statistics.catchUpBytesTotal = 10_000_000
        var status = PrimaryStatus(vm: "web-1", state: .protecting)
        status.add(statistics: statistics)
        let object = try Self.object(.primary(status))
        #expect(object["catchUpBytesSent"] as? Int == 4_000_000 && object["catchUpBytesTotal"] as? Int == 10_000_000)
        let rate = try #require(object["catchUpBytesPerSecond"] as? Double)
        let left = try #require(object["catchUpSecondsLeft"] as? Double)
        #expect(rate > 1_500_000 && rate <= 2_000_000 && left >= 3 && left < 4, "\(rate) B/s, \(left) s left")
        let table = AgentStatus.primary(status).humanReadable
        #expect(table.contains("catch-up progress") && table.contains("40%") && table.contains("4.0 of 10.0 MB"), "\(table)")

        // Acknowledged: the progress is gone, the catch-up's totals stay.
        statistics.catchUpDuration = .seconds(3)
        var done = PrimaryStatus(vm: "web-1", state: .protecting)
        done.add(statistics: statistics)
        #expect(done.catchUpBytesSent == nil && done.catchUpSecondsLeft == nil && done.catchUpSeconds == 3)
    }

    @Test func aPrimaryBetweenSessionsShowsOnlyWhatItKnows() throws {
        var status = PrimaryStatus(vm: "web-1", state: .holding, detail: "backup lost: timeout")
        status.dirtyTracking = "pagemap"
        status.sessions = 1
        status.fence = "none"
        let object = try Self.object(.primary(status))
        #expect(Set(object.keys) == ["role", "vm", "state", "detail", "dirtyTracking", "sessions", "fence"])
        #expect(object["state"] as? String == "holding")
    }

    @Test func aBackupKeepsItsFieldNamesAndValues() throws {
        var status = BackupStatus(vm: "web-1", state: .serving, detail: "session ended")
        status.committedEpoch = 42
        status.syncPages = 100
        status.sessions = 2
        status.fence = "none"
        status.peerSilentMilliseconds = 12.5
        status.heartbeatTimeoutMilliseconds = 1000
        let object = try Self.object(.backup(status))
        #expect(Set(object.keys) == ["role", "vm", "state", "detail", "committedEpoch", "syncPages", "sessions", "fence",
                                     "peerSilentMilliseconds", "heartbeatTimeoutMilliseconds"])
        #expect(object["role"] as? String == "backup" && object["state"] as? String == "serving")
        #expect(object["committedEpoch"] as? Int == 42 && object["peerSilentMilliseconds"] as? Double == 12.5)
    }

    @Test func aResetReplicaShowsWhy() throws {
        var status = BackupStatus(vm: "web-1", state: .serving)
        status.replicaReset = "fenced: node-b claimed the VM in witness term 8"
        #expect(try Self.object(.backup(status))["replicaReset"] as? String == status.replicaReset)
        #expect(AgentStatus.backup(status).humanReadable.contains("replica reset"))
    }

    @Test func aStartingNodeShowsItsRoleVMAndState() throws {
        let object = try Self.object(.starting(StartingStatus(vm: "web-1", state: "starting")))
        #expect(Set(object.keys) == ["role", "vm", "state"])
        #expect(object["role"] as? String == "starting" && object["vm"] as? String == "web-1" && object["state"] as? String == "starting")
    }

    @Test func everyRoleDecodesAsItWasEncoded() throws {
        var backup = BackupStatus(vm: "v", state: .serving)
        backup.committedEpoch = 3
        for status in [AgentStatus.primary(Self.primary), .backup(backup), .starting(StartingStatus(vm: "v", state: "terminated", detail: "fenced"))] {
            #expect(try JSONDecoder().decode(AgentStatus.self, from: ControlServer.encode(status)) == status)
        }
    }

    @Test func theDetailOfEveryRoleCanBeExtended() {
        var status = AgentStatus.backup(BackupStatus(vm: "v", state: .serving))
        status.detail = "switched over"
        #expect(status.backup?.detail == "switched over")
        #expect(status.humanReadable.contains("detail  switched over"))
    }

    /// After re-protection a session starts at the epoch after the last one captured, so its
    /// count of checkpoints sent is far below the epoch numbers it sends and commits.
    @Test func currentEpochIsTheNewestEpochSentNotTheSessionsCount() {
        var statistics = PrimaryStatistics()
        statistics.checkpointsSent = 3
        statistics.currentEpoch = 43
        statistics.lastAcknowledgedEpoch = 42
        var status = PrimaryStatus(vm: "v", state: .protecting)
        status.add(statistics: statistics)
        #expect(status.currentEpoch == 43)
        #expect(status.currentEpoch ?? 0 >= status.committedEpoch ?? 0)
    }
}
