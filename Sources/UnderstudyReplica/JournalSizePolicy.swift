/// How large the epoch journal's file is kept.
///
/// Steady-state checkpoints reuse the file's mapped, allocated pages instead of faulting in new
/// ones, so the file does not shrink after every small epoch. But one huge epoch (a guest filling
/// its page cache, the first checkpoint after a sync) must not hold its size for ever: on a tmpfs
/// replica directory that is memory. Once no epoch of the last `window` needed more than half
/// the file, it shrinks to the largest of those (never below `floor`).
struct JournalSizePolicy: Sendable {
    /// The size below which the file is never shrunk.
    let floor: Int
    /// How many recent epochs the kept size covers.
    let window: Int
    private var recent: [Int] = []
    private var next = 0

    init(floor: Int = 64 << 20, window: Int = 256) {
        precondition(window > 0)
        self.floor = floor
        self.window = window
    }

    /// The size the file should have for an epoch needing `needed` bytes, when it has `current`;
    /// nil to leave it as it is.
    mutating func size(forEpochNeeding needed: Int, current: Int) -> Int? {
        if recent.count < window { recent.append(needed) } else { recent[next] = needed }
        next = (next + 1) % window
        if needed > current { return needed }
        guard recent.count == window, current > floor else { return nil }
        let keep = max(floor, recent.max()!)
        return current > 2 * keep ? keep : nil
    }
}
