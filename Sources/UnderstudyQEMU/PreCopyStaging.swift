/// Where one checkpoint's pre-copy rounds keep their copies until the pause: one slot per page.
/// A page a later round collects again (the guest wrote it after its copy) is copied back into
/// its slot, and only pages new to the checkpoint take new staging.
///
/// Why: a guest rewriting a large working set is pre-copied in several held rounds, each finding
/// most of the same pages again. With a new buffer per round, every round faulted in staging of
/// the working set's size (about 11 µs a page beside the busy guest here) while the guest rewrote
/// that set, so the rounds stopped shrinking what was pending and the pause copied all of it (a
/// guest's first 196 k-page burst: a 98–106 ms pause). With slots, the rounds after the one that
/// found the working set only copy.
///
/// The slots stay mapped from one checkpoint to the next: the most slots the checkpoints of the
/// last `idleRelease` needed are ready memory for the next. Slots mapped beyond that are given
/// back to the system when a checkpoint ends (`reset`), so that a burst's working set is not held
/// through the quiet after it; a later burst faults them in again before its rounds collect.
/// Used by one capturing thread at a time.
final class PreCopyStaging {
    /// One round's pages (sorted) and the slot each is copied into.
    struct Placement {
        let pages: [UInt64]
        let slots: [Int]
    }

    private let pageSize: Int
    private let guestPages: Int
    /// Guest-RAM-sized and lazily zero-filled (made at the first round): a slot costs memory
    /// once first used.
    private var slots: AnonymousMemory?
    /// Each guest page's slot plus one (0: none in this checkpoint); made with `slots`.
    private var slotOfPage: [UInt32] = []
    /// The page in each slot.
    private var pageOfSlot: [UInt64] = []
    /// The slots each round added, each range in page order since the round's pages were sorted.
    private var runs: [Range<Int>] = []
    /// How many slots are mapped already.
    private var mapped = 0
    /// The most slots the checkpoints needed since `windowStart` (CLOCK_MONOTONIC nanoseconds).
    private var neededInWindow = 0
    private var windowStart: UInt64
    /// Mapped slots above this are being given back (the need of the last whole window).
    private var releasingDownTo: Int?
    private let idleRelease: Duration
    private let now: () -> UInt64

    /// - Parameter idleRelease: how long mapped slots may go unneeded before they are given back
    ///   (as for `StagingPool`).
    init(guestBytes: Int, pageSize: Int, idleRelease: Duration = .seconds(30), now: @escaping () -> UInt64 = HostClock.monotonic) {
        self.pageSize = pageSize
        guestPages = guestBytes / pageSize
        precondition(guestPages < Int(UInt32.max), "guest memory of \(guestPages) pages has more pages than slots can number")
        self.idleRelease = idleRelease
        self.now = now
        windowStart = now()
    }

    /// How many slots are mapped (memory held while no checkpoint uses it).
    var mappedSlots: Int { mapped }

    /// Pages in the slots: each page pre-copied for this checkpoint, once.
    var count: Int { pageOfSlot.count }

    /// Makes sure that slots for a round of `pending` pages are mapped, faulting them in now if
    /// they are not (then true). Called while the guest runs, before a round collects: faulting in
    /// is slow (about 11 µs a page beside a busy guest), and pages collected before it would be
    /// rewritten by the copy. Later rounds mostly find pages that have slots already, so this
    /// reserves for the larger of the slots used and `pending`, and an eighth more for a set that
    /// grows a little; a round that finds more new pages faults in the rest when it places them.
    /// (Reserving for all used slots plus `pending` mapped slots for the whole 1 GiB guest under
    /// the pause bench's dirty load, whose working set is 768 MiB.)
    func reserve(pending: Int) -> Bool {
        let wanted = min(guestPages, max(count, pending) + pending / 8 + 256)
        neededInWindow = max(neededInWindow, wanted)
        guard wanted > mapped else { return false }
        mapSlots(upTo: wanted)
        return true
    }

    /// Gives each of a round's `pages` (sorted, as tracking reports them) its slot: the one it has
    /// in this checkpoint, or a new one. Slots never used before are faulted in now, while the
    /// guest runs, so that copying into them (in a hold, say) takes no page faults.
    func place(_ pages: [UInt64]) -> Placement {
        makeSlots()
        let first = pageOfSlot.count
        var placed: [Int] = []
        placed.reserveCapacity(pages.count)
        for page in pages {
            precondition(page < UInt64(guestPages), "page \(page) lies beyond guest memory")
            let known = Int(slotOfPage[Int(page)])
            if known > 0 {
                placed.append(known - 1)
            } else {
                placed.append(pageOfSlot.count)
                pageOfSlot.append(page)
                slotOfPage[Int(page)] = UInt32(pageOfSlot.count)
            }
        }
        if pageOfSlot.count > first { runs.append(first..<pageOfSlot.count) }
        mapSlots(upTo: pageOfSlot.count)
        return Placement(pages: pages, slots: placed)
    }

    /// Makes the slots and the page → slot table, at the first use.
    private func makeSlots() {
        guard slots == nil else { return }
        slots = AnonymousMemory(size: guestPages * pageSize, purpose: "pre-copy staging")
        slotOfPage = [UInt32](repeating: 0, count: guestPages)
    }

    /// Faults in the slots up to `wanted` not mapped yet.
    private func mapSlots(upTo wanted: Int) {
        makeSlots()
        neededInWindow = max(neededInWindow, wanted)
        guard wanted > mapped, let slots else { return }
        StagingPool.faultIn(UnsafeMutableRawBufferPointer(rebasing: slots.bytes[(mapped * pageSize)..<(wanted * pageSize)]))
        mapped = wanted
    }

    /// Copies the placed pages at `positions` out of guest `memory` into their slots.
    func copy(_ placement: Placement, at positions: Range<Int>, from memory: UnsafeRawBufferPointer) {
        guard let staging = slots?.bytes.baseAddress else { return }
        GuestPageCopy.copy(placement.pages, at: positions, from: memory, to: staging, pageSize: pageSize) { placement.slots[$0] }
    }

    /// The copies, one per round that added slots: its pages (sorted) and their bytes, contiguous.
    /// Valid until `reset`.
    var copies: [(pageIndices: ArraySlice<UInt64>, bytes: UnsafeRawPointer)] {
        guard let staging = slots?.bytes.baseAddress else { return [] }
        return runs.map { (pageOfSlot[$0], UnsafeRawPointer(staging + $0.lowerBound * pageSize)) }
    }

    /// Empties the slots for the next checkpoint. Once every `idleRelease`, the slots mapped beyond
    /// the most that the checkpoints of that time needed are given back, `StagingPool.releaseChunk`
    /// at each reset (about 0.25 ms; 800 MiB at once took about 50 ms here), and not below what
    /// the checkpoints since then need. On the capturing thread, after its capture: a slot must
    /// not be faulted in again while it is being given back.
    func reset() {
        for page in pageOfSlot { slotOfPage[Int(page)] = 0 }
        pageOfSlot.removeAll(keepingCapacity: true)
        runs.removeAll(keepingCapacity: true)
        let time = now()
        if HostClock.span(from: windowStart, to: time) >= idleRelease {
            releasingDownTo = neededInWindow
            (windowStart, neededInWindow) = (time, 0)
        }
        guard let target = releasingDownTo.map({ max($0, neededInWindow) }), mapped > target, let slots else {
            releasingDownTo = nil
            return
        }
        let kept = max(target, mapped - StagingPool.releaseChunk / pageSize)
        slots.zero(bytes: (kept * pageSize)..<(mapped * pageSize))
        mapped = kept
    }
}
