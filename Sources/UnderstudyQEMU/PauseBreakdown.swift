/// Where one checkpoint's pause went, from QEMU's STOP event to its RESUME event, phase by phase.
/// The QEMU-side phases are known only with the preload library's pause channel (zero without).
public struct PauseBreakdown: Sendable, Equatable {
    /// The whole pause (STOP to RESUME).
    public var total: Duration = .zero
    /// STOP to the save opening its file: QEMU's vm_stop drains the disks' requests in flight and
    /// flushes them (an NBD FLUSH, which the agent's disk server makes durable) before it returns.
    public var stop: Duration = .zero
    /// The library's STOPPED message to the agent's thread holding it: waiting for a core.
    public var wake: Duration = .zero
    /// PAGEMAP_SCAN (or the comparison) collecting the written pages and re-arming tracking.
    public var collect: Duration = .zero
    /// Copying the collected pages to staging.
    public var copy: Duration = .zero
    /// Sealing the epoch's disk writes and network output.
    public var boundary: Duration = .zero
    /// How much of collect, copy and boundary the agent's thread spent off a core (wall clock
    /// minus its CPU time): the host scheduler's share besides `wake`.
    public var preempted: Duration = .zero
    /// The agent letting QEMU go on (once it collected, or at once when few page tables were
    /// written) to the save closing its file: QEMU serialising the devices, while the agent copies.
    public var deviceSave: Duration = .zero
    /// The later of the agent's answer and the save's end, to RESUME: QEMU taking the answer and
    /// restarting the vCPUs.
    public var resume: Duration = .zero
    /// Pages collected and copied inside the pause.
    public var pages = 0
    /// Pages copied before the pause while the guest ran (pre-copy), and in how many rounds.
    public var preCopiedPages = 0
    public var preCopyRounds = 0
    /// Pre-copy rounds that held the guest (it wrote too fast for rounds while it ran), the holds
    /// (slices with the guest stopped) before this pause, how long they held it in all, and the
    /// longest of them: the guest stalls for each, besides the pause. The longest is one pause's
    /// own: sums and means of pauses leave it zero.
    public var heldRounds = 0
    public var holds = 0
    public var held: Duration = .zero
    public var longestHold: Duration = .zero
    /// Pauses whose look before the stop was left out (`PreStopLook`): 1 or 0 for one pause.
    public var skippedLooks = 0

    public init() {}

    /// The time the host scheduler cost: the agent waking late and being preempted.
    public var scheduler: Duration { wake + preempted }

    /// Phase by phase (and page by page) sums: what many pauses cost in all.
    public static func + (a: PauseBreakdown, b: PauseBreakdown) -> PauseBreakdown {
        a.combined(with: b, durations: +, counts: +)
    }

    /// Phase by phase differences: what the pauses summed in `a` but not in `b` cost.
    public static func - (a: PauseBreakdown, b: PauseBreakdown) -> PauseBreakdown {
        a.combined(with: b, durations: -, counts: -)
    }

    /// Every phase and count divided by `count`: the mean pause of a sum of `count` pauses.
    public func mean(of count: Int) -> PauseBreakdown {
        precondition(count > 0)
        return combined(with: self, durations: { a, _ in a / count }, counts: { a, _ in a / count })
    }

    private func combined(with other: PauseBreakdown, durations: (Duration, Duration) -> Duration, counts: (Int, Int) -> Int) -> PauseBreakdown {
        var result = PauseBreakdown()
        for path in [\PauseBreakdown.total, \.stop, \.wake, \.collect, \.copy, \.boundary, \.preempted, \.deviceSave, \.resume, \.held] {
            result[keyPath: path] = durations(self[keyPath: path], other[keyPath: path])
        }
        for path in [\PauseBreakdown.pages, \.preCopiedPages, \.preCopyRounds, \.heldRounds, \.holds, \.skippedLooks] {
            result[keyPath: path] = counts(self[keyPath: path], other[keyPath: path])
        }
        return result
    }

    /// The phases in milliseconds and the page counts, by name (status and benchmark JSON).
    /// Not `skippedLooks`: a mean's would round down to nothing.
    public var summary: [String: Double] {
        var values: [String: Double] = ["pages": Double(pages), "preCopiedPages": Double(preCopiedPages),
                                        "preCopyRounds": Double(preCopyRounds), "heldRounds": Double(heldRounds), "holds": Double(holds)]
        for (name, value) in [("totalMs", total), ("stopMs", stop), ("wakeMs", wake), ("collectMs", collect), ("copyMs", copy),
                              ("boundaryMs", boundary), ("preemptedMs", preempted), ("deviceSaveMs", deviceSave),
                              ("resumeMs", resume), ("schedulerMs", scheduler), ("heldMs", held), ("longestHoldMs", longestHold)] {
            values[name] = Double(value.components.seconds) * 1000 + Double(value.components.attoseconds) / 1e15
        }
        return values
    }
}
