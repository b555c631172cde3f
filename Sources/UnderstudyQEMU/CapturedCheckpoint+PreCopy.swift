extension CapturedCheckpoint {
    /// One checkpoint out of pre-copy rounds (copied while the guest ran, oldest first) and the
    /// pause's own copy: every page once, in page order, with the content of the newest copy that
    /// has it. A page a later round or the pause collected again was written after its earlier
    /// copy, so only that later copy is the guest's content at the pause. Everything but the pages
    /// (device state, disk changes, pause) comes from `paused`.
    public static func merging(preCopied rounds: [CapturedCheckpoint], paused: CapturedCheckpoint) -> CapturedCheckpoint {
        guard !rounds.isEmpty else { return paused }
        var newest: [UInt64: (copy: CapturedCheckpoint, position: Int)] = [:]
        for copy in rounds + [paused] {
            for (position, index) in copy.pageIndices.enumerated() { newest[index] = (copy, position) }
        }
        let indices = newest.keys.sorted()
        let merged = CapturedCheckpoint(pageIndices: indices, pageSize: paused.pageSize)
        for (position, index) in indices.enumerated() {
            let source = newest[index]!
            merged.page(at: position).copyMemory(from: UnsafeRawBufferPointer(source.copy.page(at: source.position)))
        }
        merged.deviceState = paused.deviceState
        merged.diskChanges = paused.diskChanges
        merged.diskChangesLost = paused.diskChangesLost
        merged.pause = paused.pause
        merged.pauseBreakdown = paused.pauseBreakdown
        return merged
    }
}
