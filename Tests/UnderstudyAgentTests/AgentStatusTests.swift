import Foundation
import Testing
@testable import UnderstudyAgent
import UnderstudyNetwork
import UnderstudyProtocol
import UnderstudyQEMU

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
        "pauseMillisecondsP99", "pauseMillisecondsMax", "holds", "holdMillisecondsMax", "skippedLooks", "dirtyPagesPerCheckpoint", "rawBytes", "wireBytes", "ackLatencyMillisecondsP50",
        "ackLatencyMillisecondsP99", "dirtyTracking", "stagingBytes", "syncPages", "sessions", "outputHeldFrames", "outputHeldBytes", "outputDroppedFrames",
        "outputReleasedFrames", "outputFencedFrames", "outputMode", "syncBytesDone", "syncBytesTotal", "syncBytesPerSecond", "syncSecondsLeft",
        "diskPendingBytes", "diskWrites", "diskFlushes", "activatedFromEpoch", "fence", "protectionMode", "intervalMilliseconds",
        "intervalReason", "checkpointDemandBytesPerSecond", "linkBudgetBytesPerSecond", "lagMilliseconds", "lagMillisecondsP50",
        "lagMillisecondsP99", "recoveryPointObjectiveMilliseconds", "recoveryPointExceeded", "guestThrottle", "sessionStart",
        "catchUpPages", "catchUpDiskWrites", "catchUpWireBytes", "catchUpSeconds", "catchUpJournalBytes",
        "deviceStateRawBytesPerCheckpoint", "deviceStateWireBytesPerCheckpoint", "framingBytesPerCheckpoint",
    ]

    /// A primary with every field set: from a session's statistics, then what the protector adds.
    static var primary: PrimaryStatus {
        var statistics = PrimaryStatistics()
        statistics.checkpointsSent = 3
        statistics.currentEpoch = 43
        statistics.lastAcknowledgedEpoch = 42
        statistics.rawBytes = 4096
        statistics.wireBytes = 1024
        statistics.deviceStateRawBytes = 3 * 14_662
        statistics.deviceStateWireBytes = 14_667 + 2 * 190
        statistics.framingBytes = 3 * 120
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
        status.stagingBytes = 12_582_912
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
        #expect(object["deviceStateRawBytesPerCheckpoint"] as? Double == 14_662)
        #expect(object["deviceStateWireBytesPerCheckpoint"] as? Double == Double(14_667 + 2 * 190) / 3)
        #expect(object["framingBytesPerCheckpoint"] as? Double == 120)
        #expect(object["sessionStart"] as? String == "catch-up from checkpoint 40")
        #expect(object["outputMode"] as? String == "output commit")
        #expect(object["activatedFromEpoch"] as? Int == 7)
        #expect(object["stagingBytes"] as? Int == 12_582_912)
        #expect(AgentStatus.primary(Self.primary).humanReadable.contains("12.6 MB to copy checkpoints into"))
    }

    /// Once the sync is done its progress gives way to what it cost.
    @Test func aFinishedSyncShowsItsPagesBytesAndSeconds() throws {
        var statistics = PrimaryStatistics()
        statistics.syncStarted = .now - .seconds(3)
        statistics.syncBytesDone = 4096 * 300
        statistics.syncBytesTotal = 4096 * 300
        statistics.syncPages = 300
        statistics.syncWireBytes = 70_000
        statistics.syncDuration = .milliseconds(1500)
        var status = PrimaryStatus(vm: "web-1", state: .protecting)
        status.add(statistics: statistics)
        let object = try Self.object(.primary(status))
        #expect(object["syncPages"] as? Int == 300 && object["syncWireBytes"] as? Int == 70_000 && object["syncSeconds"] as? Double == 1.5)
        #expect(object["syncBytesDone"] == nil && object["syncSecondsLeft"] == nil)
        let table = AgentStatus.primary(status).humanReadable
        #expect(table.contains("300 pages, 0.1 MB on the wire, in 1.5 s"), "\(table)")
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

    @Test func theMeanPauseShowsWhereATypicalPauseGoesPhaseByPhase() throws {
        func pause(stop: Int, collect: Int, deviceSave: Int, pages: Int) -> PauseBreakdown {
            var pause = PauseBreakdown()
            (pause.stop, pause.collect, pause.deviceSave, pause.pages) = (.microseconds(stop), .microseconds(collect), .microseconds(deviceSave), pages)
            pause.total = pause.stop + pause.collect + pause.deviceSave
            return pause
        }
        let first = pause(stop: 300, collect: 100, deviceSave: 500, pages: 10)
        let second = pause(stop: 100, collect: 300, deviceSave: 700, pages: 30)
        #expect((first + second) - second == first)
        var statistics = PrimaryStatistics()
        #expect(statistics.meanPause == nil)
        statistics.pauseSum = first + second
        statistics.pausesBrokenDown = 2
        #expect(statistics.meanPause == pause(stop: 200, collect: 200, deviceSave: 600, pages: 20))
        var status = PrimaryStatus(vm: "web-1", state: .protecting)
        status.add(statistics: statistics)
        let mean = try #require(status.meanPause)
        #expect(abs(mean["totalMs"]! - 1.0) < 1e-9 && abs(mean["stopMs"]! - 0.2) < 1e-9 && mean["pages"] == 20, "\(mean)")
        let table = AgentStatus.primary(status).humanReadable
        #expect(table.contains("mean pause") && table.contains("1.00 ms, 20 pages: stop 0.20") && table.contains("deviceSave 0.60"), "\(table)")
    }

    @Test func holdsOfAFastWritingGuestAreCountedWithTheLongest() throws {
        func pause(holds: Int, longest: Duration) -> PauseBreakdown {
            var pause = PauseBreakdown()
            (pause.total, pause.holds, pause.heldRounds, pause.longestHold) = (.milliseconds(4), holds, holds > 0 ? 1 : 0, longest)
            return pause
        }
        var statistics = PrimaryStatistics()
        for (epoch, (holds, longest)) in [(3, Duration.milliseconds(9)), (0, .zero), (5, .milliseconds(7))].enumerated() {
            statistics.note(pause(holds: holds, longest: longest), epoch: UInt64(epoch))
        }
        var status = PrimaryStatus(vm: "web-1", state: .protecting)
        status.add(statistics: statistics)
        #expect(status.holds == 8 && status.holdMillisecondsMax == 9)
        let table = AgentStatus.primary(status).humanReadable
        #expect(table.contains("guest holds") && table.contains("8 before pauses") && table.contains("longest 9.00 ms"), "\(table)")
        var quiet = PrimaryStatus(vm: "web-1", state: .protecting)
        quiet.add(statistics: PrimaryStatistics())
        #expect(!AgentStatus.primary(quiet).humanReadable.contains("guest holds"), "no holds, no row")
    }

    @Test func stopsWithoutALookAreCounted() throws {
        var statistics = PrimaryStatistics()
        for skipped in [1, 0, 1, 1] {
            var pause = PauseBreakdown()
            (pause.total, pause.skippedLooks) = (.milliseconds(1), skipped)
            statistics.note(pause, epoch: 1)
        }
        var status = PrimaryStatus(vm: "web-1", state: .protecting)
        status.add(statistics: statistics)
        #expect(status.skippedLooks == 3 && status.longestPause?["skippedLook"] == 1 && status.meanPause?["skippedLook"] == nil)
        let table = AgentStatus.primary(status).humanReadable
        #expect(table.contains("3 stops without a look") && table.contains("(no look before the stop)"), "\(table)")
        var quiet = PrimaryStatus(vm: "web-1", state: .protecting)
        quiet.add(statistics: PrimaryStatistics())
        #expect(quiet.skippedLooks == 0 && !AgentStatus.primary(quiet).humanReadable.contains("looks left out"), "none, no row")
    }

    @Test func aBackupShowsWhatCommittingEachCheckpointCosts() throws {
        var statistics = BackupStatistics()
        #expect(BackupStatus(vm: "web-1", state: .serving, statistics: statistics).sealMillisecondsP50 == nil)
        for milliseconds in 1...100 {
            statistics.commitTimings.append(CommitTiming(seal: .milliseconds(milliseconds), journalSync: .microseconds(500 * milliseconds),
                                                         apply: .microseconds(100 * milliseconds)))
        }
        let status = BackupStatus(vm: "web-1", state: .serving, statistics: statistics)
        #expect(status.sealMillisecondsP50! >= 49 && status.sealMillisecondsP50! <= 51 && status.sealMillisecondsP99! >= 98)
        #expect(status.journalSyncMillisecondsP50! >= 24.5 && status.journalSyncMillisecondsP50! <= 25.5)
        #expect(status.applyMillisecondsP50! >= 4.9 && status.applyMillisecondsP50! <= 5.1 && status.applyMillisecondsP99! >= 9.8)
        let table = AgentStatus.backup(status).humanReadable
        #expect(table.contains("checkpoint commit") && table.contains("seal before ACK p50 5") && table.contains("journal sync p50 2"), "\(table)")
    }

    @Test func theGatePolicyShowsEachRulesCounters() throws {
        var machine = GatePolicyStateMachine(policy: GatePolicy(rules: [
            GateRule(name: "no ssh", action: .deny, traffic: .tcp, destinationPorts: PortRange(22, 22)),
            GateRule(action: .allow, traffic: .udp),
        ]), now: .now)
        let ssh = [UInt8](repeating: 0, count: 12) + [0x08, 0x00, 0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1, 0x9C, 0x40, 0, 22]
        for _ in 0..<3 { _ = machine.filter(ssh.withUnsafeBytes { FrameSummary(parsing: $0) }, length: ssh.count, .toGuest, now: .now) }
        var status = PrimaryStatus(vm: "web-1", state: .protecting)
        status.gatePolicy = machine.statistics
        let object = try Self.object(.primary(status))
        let policy = try #require(object["gatePolicy"] as? [String: Any])
        let rules = try #require(policy["rules"] as? [[String: Any]])
        #expect(rules.first?["name"] as? String == "no ssh" && rules.first?["deniedFrames"] as? Int == 3, "\(rules)")
        let table = AgentStatus.primary(status).humanReadable
        #expect(table.contains("gate policy") && table.contains("2 rules, default allow: 3 frames dropped"), "\(table)")
        #expect(table.contains("rule 0 no ssh") && table.contains("deny tcp both port 22: 3 frames (114 bytes), 3 dropped"), "\(table)")
        #expect(table.contains("rule 1") && table.contains("allow udp both: 0 frames"), "\(table)")
        #expect(try JSONDecoder().decode(AgentStatus.self, from: ControlServer.encode(AgentStatus.primary(status))) == .primary(status))
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
