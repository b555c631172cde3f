import Foundation

extension PrimaryStatus {
    /// The rows of `understudy status`'s table for this role, in order.
    var rows: [(String, String)] {
        var rows: [(String, String)] = []
        func add(_ name: String, _ value: String?) { if let value { rows.append((name, value)) } }
        add("current epoch", currentEpoch.map { "\($0)" })
        add("committed epoch", committedEpoch.map { "\($0)" })
        add("checkpoints/s", checkpointsPerSecond.map { String(format: "%.1f", $0) })
        if let output = checkpointsForOutput, let interval = checkpointsForInterval, let catchUp = checkpointsForCatchUp {
            rows.append(("checkpoints taken for", "output \(output), interval \(interval), catch-up \(catchUp)"))
        }
        if let p50 = pauseMillisecondsP50, let p99 = pauseMillisecondsP99, let max = pauseMillisecondsMax {
            rows.append(("pause", String(format: "p50 %.2f ms, p99 %.2f ms, max %.2f ms", p50, p99, max)))
        }
        func phases(_ pause: [String: Double]) -> String {
            ["stop", "wake", "collect", "copy", "boundary", "deviceSave", "resume", "preempted"]
                .compactMap { name in pause["\(name)Ms"].map { "\(name) " + String(format: "%.2f", $0) } }.joined(separator: ", ")
        }
        if let mean = meanPause, let total = mean["totalMs"], total > 0 {
            rows.append(("mean pause", String(format: "%.2f ms, %.0f pages: ", total, mean["pages"] ?? 0) + phases(mean)))
        }
        if let longest = longestPause, let total = longest["totalMs"], total > 0 {
            rows.append(("longest pause", String(format: "%.2f ms at checkpoint %.0f, %.0f pages (+%.0f pre-copied): ", total,
                                                 longest["epoch"] ?? 0, longest["pages"] ?? 0, longest["preCopiedPages"] ?? 0)
                         + phases(longest) + (longest["skippedLook"] == 1 ? " (no look before the stop)" : "")))
        }
        if let holds, holds > 0, let longest = holdMillisecondsMax {
            rows.append(("guest holds", String(format: "%d before pauses (pre-copy of a fast-writing guest), longest %.2f ms", holds, longest)))
        }
        if let skippedLooks, skippedLooks > 0 {
            rows.append(("looks left out", "\(skippedLooks) stops without a look at the pending writes (soon after a quiet checkpoint)"))
        }
        add("dirty pages/checkpoint", dirtyPagesPerCheckpoint.map { String(format: "%.0f", $0) })
        if let raw = rawBytes, let wire = wireBytes {
            rows.append(("bytes", String(format: "%.1f MB raw, %.1f MB on the wire", Double(raw) / 1e6, Double(wire) / 1e6)))
        }
        if let raw = deviceStateRawBytesPerCheckpoint, let wire = deviceStateWireBytesPerCheckpoint, let framing = framingBytesPerCheckpoint {
            rows.append(("per checkpoint", String(format: "device state %.0f B, %.0f B on the wire; framing %.0f B", raw, wire, framing)))
        }
        if let p50 = ackLatencyMillisecondsP50, let p99 = ackLatencyMillisecondsP99 {
            rows.append(("ack latency", String(format: "p50 %.2f ms, p99 %.2f ms", p50, p99)))
        }
        add("dirty tracking", dirtyTracking)
        add("staging kept", stagingBytes.map { String(format: "%.1f MB to copy checkpoints into (given back after 30 s unneeded)", Double($0) / 1e6) })
        add("heartbeat datagrams", heartbeatDatagrams)
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
        if let sent = catchUpBytesSent, let total = catchUpBytesTotal, total > 0 {
            rows.append(("catch-up progress", Self.progress(done: sent, total: total, bytesPerSecond: catchUpBytesPerSecond, secondsLeft: catchUpSecondsLeft)))
        }
        add("catch-up journal", catchUpJournalBytes.flatMap { $0 > 0 ? "\($0) bytes of disk writes kept for the backup" : nil })
        if let done = syncBytesDone, let total = syncBytesTotal, total > 0 {
            rows.append(("initial sync", Self.progress(done: done, total: total, bytesPerSecond: syncBytesPerSecond, secondsLeft: syncSecondsLeft)))
        } else {
            add("initial sync", syncPages.map { pages in
                "\(pages) pages" + (syncWireBytes.map { String(format: ", %.1f MB on the wire", Double($0) / 1e6) } ?? "")
                    + (syncSeconds.map { String(format: ", in %.1f s", $0) } ?? "")
            })
        }
        add("sessions", sessions.map { "\($0)" })
        if let held = outputHeldFrames, let bytes = outputHeldBytes, let dropped = outputDroppedFrames, let released = outputReleasedFrames {
            rows.append(("output", "\(held) frames (\(bytes) bytes) held, \(released) released, \(dropped) dropped"
                         + (outputFencedFrames.flatMap { $0 > 0 ? ", \($0) dropped while not the active copy" : nil } ?? "")
                         + (outputMode.map { "; \($0)" } ?? "")))
        }
        if let policy = gatePolicy {
            rows.append(("gate policy", "\(policy.rules.count) rules, default \(policy.defaultAction): \(policy.deniedFrames) frames dropped; "
                         + "\(policy.unmatchedFrames) frames (\(policy.unmatchedBytes) bytes) matched no rule"))
            for (index, rule) in policy.rules.enumerated() {
                rows.append(("  \(rule.name == "rule \(index)" ? rule.name : "rule \(index) \(rule.name)")",
                             "\(rule.rule): \(rule.frames) frames (\(rule.bytes) bytes), \(rule.deniedFrames) dropped"))
            }
        }
        if let writes = diskWrites, let flushes = diskFlushes {
            rows.append(("disk", "\(writes) writes, \(flushes) flushes" + (diskPendingBytes.map { ", \($0) bytes not yet in a checkpoint" } ?? "")))
        }
        add("activated from", activatedFromEpoch.map { "checkpoint \($0)" })
        add("active copy", fence)
        return rows
    }

    /// A progress bar with bytes done of total, rate and estimated time left.
    static func progress(done: Int, total: Int, bytesPerSecond: Double?, secondsLeft: Double?) -> String {
        let fraction = min(1, Double(done) / Double(total))
        let filled = Int(fraction * 30)
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: 30 - filled)
        let rate = (bytesPerSecond ?? 0) / 1e6
        let left = secondsLeft.map { String(format: "ETA %.0f s", $0) } ?? "ETA unknown"
        return String(format: "[%@] %3.0f%%  %.1f of %.1f MB  %.0f MB/s  %@", bar, fraction * 100,
                      Double(done) / 1e6, Double(total) / 1e6, rate, left)
    }
}
