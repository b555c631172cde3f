import CUnderstudyShims
import UnderstudyDisk
import UnderstudyProtocol
import UnderstudyTransport

extension PrimaryReplicator {
    /// Iterative pre-copy: send all memory that may hold data while the guest runs, then what it
    /// dirtied meanwhile, until a round is small; the first checkpoint (guest paused) sends the rest.
    /// Pages that were never written are zero, as the backup's replica and the encoder's last-sent
    /// copy start, and are not sent: a young guest with much memory syncs in seconds.
    func initialSync(encoder: CheckpointEncoder, sender: FrameSender) throws {
        let started = ContinuousClock.now
        try source.startTracking()
        var pages = try source.pagesWithData()
        try sender.enqueue(Message.syncBegin(SyncBegin(pageCount: UInt64(pages.count))).frame)
        var output = encoder.makeOutput()
        let pageSize = Int(source.identity.pageSize)
        let diskRanges = disk?.dataRanges() ?? []
        session.withLock {
            $0.session.syncStarted(at: started, bytes: pages.count * pageSize + diskRanges.reduce(0) { $0 + Int($1.count) })
        }
        logger.info("initial sync starts", metadata: ["pages-with-data": "\(pages.count)", "pages": "\(source.identity.pageCount)"])
        let progress: @Sendable (Int) -> Void = { [session] bytes in session.withLock { $0.session.synced(bytes: bytes) } }
        if let disk { try syncDisk(disk, ranges: diskRanges, encoder: encoder, sender: sender, into: &output, progress: progress) }
        var rounds = PreCopyRounds(stopPages: configuration.preCopyStopPages, maxRounds: max(1, configuration.preCopyRounds))
        while rounds.next(pending: pages.count) == .running {
            try encoder.encodeSync(pages: pages, from: source.syncMemory, to: sender, into: &output, progress: progress)
            logger.info("initial sync round done", metadata: ["round": "\(rounds.rounds)", "pages": "\(pages.count)",
                                                             "total-pages": "\(output.pages)"])
            // Collecting hands these pages to us and re-arms tracking: they must be sent, by
            // another round or the last one below. Pages written while they are being read
            // are tracked again and go into the first checkpoint.
            pages = try source.collectDirtyPages()
            session.withLock { [count = pages.count] in $0.session.syncGrew(by: count * pageSize) }
        }
        try encoder.encodeSync(pages: pages, from: source.syncMemory, to: sender, into: &output, progress: progress)
        try sender.enqueue(Message.syncEnd(encoder.syncSummary(output)).frame)
        let duration = ContinuousClock.now - started
        session.withLock { [output] in $0.session.syncSent(pages: output.pages, wireBytes: output.wireBytes, duration: duration) }
        logger.info("initial sync sent", metadata: ["pages": "\(output.pages)", "wire-bytes": "\(output.wireBytes)",
                                                   "seconds": "\(duration)"])
    }

    /// Copies the disk's data (holes and all-zero chunks are skipped: the backup's replica starts
    /// zeroed). The guest may be writing meanwhile: each such write is recorded and replayed in
    /// the first checkpoint, on top of whatever this copy read, which ends at the same bytes.
    private func syncDisk(_ disk: DiskSet, ranges: [Range<UInt64>], encoder: CheckpointEncoder, sender: FrameSender,
                          into output: inout CheckpointEncoder.Output, progress: (Int) -> Void) throws {
        let chunk = DiskWriteBatch.maxEntryBytes
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buffer.deallocate() }
        var pending: [DiskChange] = []
        for range in ranges {
            var offset = range.lowerBound
            while offset < range.upperBound {
                let count = Int(min(UInt64(chunk), range.upperBound - offset))
                let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count])
                try disk.read(into: slice, at: offset)
                if us_is_zero(slice.baseAddress, count) == 0 { pending.append(.write(offset: offset, data: .bytes(Array(slice)))) }
                progress(count)
                if pending.count == 8 {
                    try encoder.encodeDisk(pending, epoch: 0, to: sender, into: &output)
                    pending.removeAll(keepingCapacity: true)
                }
                offset += UInt64(count)
            }
        }
        try encoder.encodeDisk(pending, epoch: 0, to: sender, into: &output)
        logger.info("initial disk sync sent", metadata: ["bytes": "\(output.diskBytes)", "size": "\(disk.size)"])
    }
}
