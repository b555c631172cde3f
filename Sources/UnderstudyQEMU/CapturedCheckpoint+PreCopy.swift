extension CapturedCheckpoint {
    /// One checkpoint out of pre-copy's copies (`PreCopyStaging`: each page pre-copied once, with
    /// the content of its newest copy) and the pause's own copy: every page once, in page order. A
    /// page the pause collected again was written after its pre-copy, so only the pause's copy is
    /// the guest's content at the pause. Everything but the pages (device state, disk changes,
    /// pause) comes from `paused`.
    ///
    /// Each copy's pages are sorted, so this is a merge of sorted lists: no hashing, one pass.
    static func merging(preCopied staging: PreCopyStaging, paused: CapturedCheckpoint) -> CapturedCheckpoint {
        let preCopied = staging.copies
        guard !preCopied.isEmpty else { return paused }
        // A buffer with pages has an address.
        let copies = paused.pageIndices.isEmpty ? preCopied : preCopied + [(paused.pageIndices[...], UnsafeRawPointer(paused.pages.baseAddress!))]
        var heads = copies.map(\.pageIndices.startIndex)
        var indices: [UInt64] = []
        var sources: [UnsafeRawPointer] = []
        indices.reserveCapacity(copies.reduce(0) { $0 + $1.pageIndices.count })
        sources.reserveCapacity(indices.capacity)
        let size = paused.pageSize
        while true {
            var smallest: UInt64?
            var newest = -1
            for (copy, head) in heads.enumerated() where head < copies[copy].pageIndices.endIndex {
                let index = copies[copy].pageIndices[head]
                // The pause's copy comes last: on a tie the last one seen is the newest.
                if smallest.map({ index <= $0 }) ?? true {
                    smallest = index
                    newest = copy
                }
            }
            guard let index = smallest else { break }
            indices.append(index)
            sources.append(copies[newest].bytes + (heads[newest] - copies[newest].pageIndices.startIndex) * size)
            for copy in heads.indices where heads[copy] < copies[copy].pageIndices.endIndex && copies[copy].pageIndices[heads[copy]] == index {
                heads[copy] += 1
            }
        }
        let merged = CapturedCheckpoint(pageIndices: indices, pageSize: size)
        for (position, source) in sources.enumerated() {
            (merged.pages.baseAddress! + position * size).copyMemory(from: source, byteCount: size)
        }
        merged.deviceState = paused.deviceState
        merged.diskChanges = paused.diskChanges
        merged.diskChangesLost = paused.diskChangesLost
        merged.pause = paused.pause
        merged.pauseBreakdown = paused.pauseBreakdown
        return merged
    }
}
