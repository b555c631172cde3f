extension CapturedCheckpoint {
    /// One checkpoint out of pre-copy rounds (copied while the guest ran, oldest first) and the
    /// pause's own copy: every page once, in page order, with the content of the newest copy that
    /// has it. A page a later round or the pause collected again was written after its earlier
    /// copy, so only that later copy is the guest's content at the pause. Everything but the pages
    /// (device state, disk changes, pause) comes from `paused`.
    ///
    /// Each copy's pages are sorted (tracking reports them so), so this is a merge of sorted
    /// lists: no hashing, one pass.
    public static func merging(preCopied rounds: [CapturedCheckpoint], paused: CapturedCheckpoint) -> CapturedCheckpoint {
        guard !rounds.isEmpty else { return paused }
        let copies = rounds + [paused]
        var heads = [Int](repeating: 0, count: copies.count)
        var indices: [UInt64] = []
        var sources: [(copy: Int, position: Int)] = []
        indices.reserveCapacity(copies.reduce(0) { $0 + $1.pageIndices.count })
        sources.reserveCapacity(indices.capacity)
        while true {
            var smallest: UInt64?
            var newest = -1
            for (copy, head) in heads.enumerated() where head < copies[copy].pageIndices.count {
                let index = copies[copy].pageIndices[head]
                // Later copies come later in `copies`: on a tie the last one seen is the newest.
                if smallest.map({ index <= $0 }) ?? true {
                    smallest = index
                    newest = copy
                }
            }
            guard let index = smallest else { break }
            indices.append(index)
            sources.append((newest, heads[newest]))
            for copy in heads.indices where heads[copy] < copies[copy].pageIndices.count && copies[copy].pageIndices[heads[copy]] == index {
                heads[copy] += 1
            }
        }
        let merged = CapturedCheckpoint(pageIndices: indices, pageSize: paused.pageSize)
        let size = paused.pageSize
        for (position, source) in sources.enumerated() {
            (merged.pages.baseAddress! + position * size)
                .copyMemory(from: copies[source.copy].pages.baseAddress! + source.position * size, byteCount: size)
        }
        merged.deviceState = paused.deviceState
        merged.diskChanges = paused.diskChanges
        merged.diskChangesLost = paused.diskChangesLost
        merged.pause = paused.pause
        merged.pauseBreakdown = paused.pauseBreakdown
        return merged
    }
}
