import Foundation
import UnderstudyNetwork
import UnderstudyProtocol
import UnderstudySystem

extension PrimaryStatus {
    /// Adds the current session's counters from its replicator's statistics.
    public mutating func add(statistics s: PrimaryStatistics) {
        currentEpoch = s.currentEpoch
        committedEpoch = s.lastAcknowledgedEpoch
        checkpointsPerSecond = s.checkpointsPerSecond()
        checkpointsForOutput = s.checkpointReasons[.output, default: 0]
        checkpointsForInterval = s.checkpointReasons[.interval, default: 0]
        checkpointsForCatchUp = s.checkpointReasons[.catchUp, default: 0]
        let pauses = s.pauses.map { $0.seconds * 1000 }.sorted()
        pauseMillisecondsP50 = percentile(pauses, 0.5)
        pauseMillisecondsP99 = percentile(pauses, 0.99)
        pauseMillisecondsMax = pauses.last ?? 0
        longestPause = s.longestPause.map {
            $0.breakdown.summary.merging(["epoch": Double($0.epoch), "skippedLook": Double($0.breakdown.skippedLooks)]) { $1 }
        }
        meanPause = s.meanPause?.summary
        holds = s.pauseSum.holds
        skippedLooks = s.pauseSum.skippedLooks
        holdMillisecondsMax = s.longestHold.milliseconds
        dirtyPagesPerCheckpoint = s.recent.isEmpty ? 0 : Double(s.recent.reduce(0) { $0 + $1.dirtyPages }) / Double(s.recent.count)
        rawBytes = s.rawBytes
        wireBytes = s.wireBytes
        if s.checkpointsSent > 0 {
            let checkpoints = Double(s.checkpointsSent)
            deviceStateRawBytesPerCheckpoint = Double(s.deviceStateRawBytes) / checkpoints
            deviceStateWireBytesPerCheckpoint = Double(s.deviceStateWireBytes) / checkpoints
            framingBytesPerCheckpoint = Double(s.framingBytes) / checkpoints
        }
        let acks = s.ackLatencies.map { $0.seconds * 1000 }.sorted()
        ackLatencyMillisecondsP50 = percentile(acks, 0.5)
        ackLatencyMillisecondsP99 = percentile(acks, 0.99)
        syncPages = s.syncPages
        if s.syncDuration > .zero {
            syncWireBytes = s.syncWireBytes
            syncSeconds = s.syncDuration.seconds
        }
        if let decision = s.interval {
            intervalMilliseconds = decision.interval.seconds * 1000
            intervalReason = decision.reason.explanation
            checkpointDemandBytesPerSecond = decision.demandBytesPerSecond
            linkBudgetBytesPerSecond = decision.budgetBytesPerSecond
        }
        if let lag = s.lag {
            let peaks = s.lagPeaks.map { $0.seconds * 1000 }.sorted()
            lagMilliseconds = lag.seconds * 1000
            lagMillisecondsP50 = percentile(peaks, 0.5)
            lagMillisecondsP99 = percentile(peaks, 0.99)
            recoveryPointExceeded = s.recoveryPointExceeded
            guestThrottle = s.throttle
        }
        switch s.start {
        case .catchUp(let base):
            sessionStart = "catch-up from checkpoint \(base)"
            catchUpPages = s.catchUpPages
            catchUpDiskWrites = s.catchUpDiskWrites
            catchUpWireBytes = s.catchUpWireBytes
            catchUpSeconds = s.catchUpDuration?.seconds
            if let started = s.catchUpStarted, s.catchUpDuration == nil {
                let elapsed = (ContinuousClock.now - started).seconds
                let rate = elapsed > 0 ? Double(s.catchUpBytesSent) / elapsed : 0
                catchUpBytesSent = s.catchUpBytesSent
                catchUpBytesTotal = s.catchUpBytesTotal
                catchUpBytesPerSecond = rate
                catchUpSecondsLeft = rate > 0 ? Double(max(0, s.catchUpBytesTotal - s.catchUpBytesSent)) / rate : nil
            }
        case .fullSync(let reason): sessionStart = "full sync" + (reason.map { ": \($0)" } ?? "")
        case nil: break
        }
        if let started = s.syncStarted, s.syncDuration == .zero {
            let elapsed = (ContinuousClock.now - started).seconds
            let rate = elapsed > 0 ? Double(s.syncBytesDone) / elapsed : 0
            syncBytesDone = s.syncBytesDone
            syncBytesTotal = s.syncBytesTotal
            syncBytesPerSecond = rate
            syncSecondsLeft = rate > 0 ? Double(max(0, s.syncBytesTotal - s.syncBytesDone)) / rate : nil
        }
    }

    /// Adds the output gate's and the disk server's counters.
    public mutating func add(devices: GuestDevices?) {
        if let devices, let statistics = devices.outputStatistics, let policy = devices.policyStatistics {
            outputHeldFrames = Int(statistics.buffer.heldFrames)
            outputHeldBytes = Int(statistics.buffer.heldBytes)
            outputDroppedFrames = Int(statistics.buffer.droppedFrames)
            outputReleasedFrames = Int(statistics.sentFrames)
            outputFencedFrames = Int(statistics.fencedFrames)
            outputMode = devices.outputMode.map { "\($0)" }
            gatePolicy = policy.rules.isEmpty && policy.defaultAction == GateRule.Action.allow.rawValue ? nil : policy
        }
        if let disks = devices?.disks, !disks.isEmpty {
            diskWrites = disks.reduce(0) { $0 + $1.statistics.writes }
            diskFlushes = disks.reduce(0) { $0 + $1.statistics.flushes }
        }
        diskPendingBytes = devices?.recorder?.pendingBytes
    }
}
