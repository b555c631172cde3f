import Foundation
import UnderstudySystem

extension AgentStatus {
    /// The status of a primary from its replicator's statistics.
    public static func primary(vm: String, state: String, detail: String? = nil, statistics s: PrimaryStatistics,
                               dirtyTracking: String) -> AgentStatus {
        var status = AgentStatus(role: "primary", vm: vm, state: state)
        status.detail = detail
        status.currentEpoch = UInt64(s.checkpointsSent)
        status.committedEpoch = s.lastAcknowledgedEpoch
        status.checkpointsPerSecond = s.checkpointsPerSecond()
        let pauses = s.pauses.map { $0.seconds * 1000 }.sorted()
        status.pauseMillisecondsP50 = percentile(pauses, 0.5)
        status.pauseMillisecondsP99 = percentile(pauses, 0.99)
        status.pauseMillisecondsMax = pauses.last ?? 0
        status.dirtyPagesPerCheckpoint = s.recent.isEmpty ? 0 : Double(s.recent.reduce(0) { $0 + $1.dirtyPages }) / Double(s.recent.count)
        status.rawBytes = s.rawBytes
        status.wireBytes = s.wireBytes
        let acks = s.ackLatencies.map { $0.seconds * 1000 }.sorted()
        status.ackLatencyMillisecondsP50 = percentile(acks, 0.5)
        status.ackLatencyMillisecondsP99 = percentile(acks, 0.99)
        status.dirtyTracking = dirtyTracking
        status.syncPages = s.syncPages
        if let decision = s.interval {
            status.intervalMilliseconds = decision.interval.seconds * 1000
            status.intervalReason = decision.reason.explanation
            status.checkpointDemandBytesPerSecond = decision.demandBytesPerSecond
            status.linkBudgetBytesPerSecond = decision.budgetBytesPerSecond
        }
        if let lag = s.lag {
            let peaks = s.lagPeaks.map { $0.seconds * 1000 }.sorted()
            status.lagMilliseconds = lag.seconds * 1000
            status.lagMillisecondsP50 = percentile(peaks, 0.5)
            status.lagMillisecondsP99 = percentile(peaks, 0.99)
            status.recoveryPointExceeded = s.recoveryPointExceeded
            status.guestThrottle = s.throttle
        }
        switch s.start {
        case .catchUp(let base):
            status.sessionStart = "catch-up from checkpoint \(base)"
            status.catchUpPages = s.catchUpPages
            status.catchUpDiskWrites = s.catchUpDiskWrites
            status.catchUpWireBytes = s.catchUpWireBytes
            status.catchUpSeconds = s.catchUpDuration?.seconds
        case .fullSync(let reason): status.sessionStart = "full sync" + (reason.map { ": \($0)" } ?? "")
        case nil: break
        }
        if let started = s.syncStarted, s.syncDuration == .zero {
            let elapsed = (ContinuousClock.now - started).seconds
            let rate = elapsed > 0 ? Double(s.syncBytesDone) / elapsed : 0
            status.syncBytesDone = s.syncBytesDone
            status.syncBytesTotal = s.syncBytesTotal
            status.syncBytesPerSecond = rate
            status.syncSecondsLeft = rate > 0 ? Double(max(0, s.syncBytesTotal - s.syncBytesDone)) / rate : nil
        }
        return status
    }

    /// Adds the output gate's and the disk server's counters.
    public mutating func add(devices: GuestDevices?) {
        if let gate = devices?.gate {
            let statistics = gate.statistics
            outputHeldFrames = Int(statistics.buffer.heldFrames)
            outputHeldBytes = Int(statistics.buffer.heldBytes)
            outputDroppedFrames = Int(statistics.buffer.droppedFrames)
            outputReleasedFrames = Int(statistics.sentFrames)
            outputFencedFrames = Int(statistics.fencedFrames)
            outputMode = "\(gate.mode)"
        }
        if let disk = devices?.disk?.statistics {
            diskWrites = Int(disk.writes)
            diskFlushes = Int(disk.flushes)
        }
        diskPendingBytes = devices?.recorder?.pendingBytes
    }

    /// The status of a backup from its receiver's statistics.
    public static func backup(vm: String, state: String, detail: String? = nil, statistics s: BackupStatistics) -> AgentStatus {
        var status = AgentStatus(role: "backup", vm: vm, state: state)
        status.detail = detail ?? s.lastSessionError
        status.committedEpoch = s.committedEpoch
        status.syncPages = s.syncPages
        status.sessions = s.sessions
        return status
    }

    /// A table for people; `--json` prints the fields as they are.
    public var humanReadable: String {
        var rows: [(String, String)] = [("role", role), ("vm", vm), ("state", state)]
        if let detail { rows.append(("detail", detail)) }
        func add(_ name: String, _ value: String?) { if let value { rows.append((name, value)) } }
        add("current epoch", currentEpoch.map { "\($0)" })
        add("committed epoch", committedEpoch.map { "\($0)" })
        add("checkpoints/s", checkpointsPerSecond.map { String(format: "%.1f", $0) })
        if let p50 = pauseMillisecondsP50, let p99 = pauseMillisecondsP99, let max = pauseMillisecondsMax {
            rows.append(("pause", String(format: "p50 %.2f ms, p99 %.2f ms, max %.2f ms", p50, p99, max)))
        }
        add("dirty pages/checkpoint", dirtyPagesPerCheckpoint.map { String(format: "%.0f", $0) })
        if let raw = rawBytes, let wire = wireBytes {
            rows.append(("bytes", String(format: "%.1f MB raw, %.1f MB on the wire", Double(raw) / 1e6, Double(wire) / 1e6)))
        }
        if let p50 = ackLatencyMillisecondsP50, let p99 = ackLatencyMillisecondsP99 {
            rows.append(("ack latency", String(format: "p50 %.2f ms, p99 %.2f ms", p50, p99)))
        }
        add("dirty tracking", dirtyTracking)
        add("mode", protectionMode)
        if let interval = intervalMilliseconds {
            let rates = checkpointDemandBytesPerSecond.map { demand in
                String(format: " (checkpoints need %.2f MB/s", demand / 1e6)
                    + (linkBudgetBytesPerSecond.map { String(format: " of %.2f MB/s", $0 / 1e6) } ?? "") + ")"
            } ?? ""
            rows.append(("interval", String(format: "%.0f ms: ", interval) + (intervalReason ?? "") + rates))
        }
        if let lag = lagMilliseconds {
            var text = String(format: "%.0f ms now", lag)
            if let p50 = lagMillisecondsP50, let p99 = lagMillisecondsP99 { text += String(format: ", p50 %.0f ms, p99 %.0f ms", p50, p99) }
            if let objective = recoveryPointObjectiveMilliseconds { text += String(format: "; objective %.0f ms", objective) }
            if recoveryPointExceeded == true { text += ": EXCEEDED" }
            if let throttle = guestThrottle, throttle > 0 { text += String(format: "; guest held paused %.0f%% of the time", throttle * 100) }
            rows.append(("replica lag", text))
        }
        add("session start", sessionStart)
        if let pages = catchUpPages, let writes = catchUpDiskWrites, let wire = catchUpWireBytes {
            rows.append(("catch-up", "\(pages) pages, \(writes) disk writes, " + String(format: "%.1f MB on the wire", Double(wire) / 1e6)
                         + (catchUpSeconds.map { String(format: ", acknowledged %.1f s after its capture", $0) } ?? ", not yet acknowledged")))
        }
        add("catch-up journal", catchUpJournalBytes.flatMap { $0 > 0 ? "\($0) bytes of disk writes kept for the backup" : nil })
        if let done = syncBytesDone, let total = syncBytesTotal, total > 0 {
            let fraction = min(1, Double(done) / Double(total))
            let filled = Int(fraction * 30)
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: 30 - filled)
            let rate = (syncBytesPerSecond ?? 0) / 1e6
            let left = syncSecondsLeft.map { String(format: "ETA %.0f s", $0) } ?? "ETA unknown"
            rows.append(("initial sync", String(format: "[%@] %3.0f%%  %.1f of %.1f MB  %.0f MB/s  %@", bar, fraction * 100,
                                                Double(done) / 1e6, Double(total) / 1e6, rate, left)))
        } else {
            add("initial sync pages", syncPages.map { "\($0)" })
        }
        add("sessions", sessions.map { "\($0)" })
        if let held = outputHeldFrames, let bytes = outputHeldBytes, let dropped = outputDroppedFrames, let released = outputReleasedFrames {
            rows.append(("output", "\(held) frames (\(bytes) bytes) held, \(released) released, \(dropped) dropped"
                         + (outputFencedFrames.flatMap { $0 > 0 ? ", \($0) dropped while not the active copy" : nil } ?? "")
                         + (outputMode.map { "; \($0)" } ?? "")))
        }
        if let writes = diskWrites, let flushes = diskFlushes {
            rows.append(("disk", "\(writes) writes, \(flushes) flushes" + (diskPendingBytes.map { ", \($0) bytes not yet in a checkpoint" } ?? "")))
        }
        add("activated from", activatedFromEpoch.map { "checkpoint \($0)" })
        add("active copy", fence)
        if let silent = peerSilentMilliseconds, let timeout = heartbeatTimeoutMilliseconds {
            rows.append(("peer", String(format: "last heard %.0f ms ago (lost after %.0f ms)", silent, timeout)))
        }
        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }.joined(separator: "\n")
    }
}
