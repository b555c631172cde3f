import Foundation
#if canImport(Glibc)
import Glibc
#endif
import UnderstudyProtocol
import UnderstudyQEMU
import UnderstudyTransport

/// Turns captured checkpoints and initial-sync pages into frames, compressing on all cores while
/// the sender thread writes earlier frames, and keeps the "last sent" copy of every page that
/// the XOR delta is computed against.
///
/// Epochs are encoded one after another (each one's deltas depend on the previous one's pages);
/// within an epoch, page batches are encoded in parallel and emitted in completion order. The
/// content digest folds frames in emission order, which is also the order the backup sees.
public final class CheckpointEncoder: @unchecked Sendable {
    public let identity: VMIdentity
    public let capabilities: Capabilities
    public let pagesPerBatch: Int
    public let compression: CompressionMode
    private let pageSize: Int
    private let encoders: [PageEncoder]
    /// The backup's copy of every page as of the last frame emitted (zero before the first sync).
    private let lastSentMemory: AnonymousMemory
    private var lastSent: UnsafeMutableRawBufferPointer { lastSentMemory.bytes }
    /// Device-state chunk size: well under the frame limit.
    static let deviceStateChunk = 1 << 20
    /// The device state this session's last checkpoint carried, the base of the next one's delta
    /// (device-state-delta); nil until the session's first checkpoint, which therefore goes whole.
    private var lastDeviceState: [UInt8]?

    /// - Parameter lastSent: the last-sent copy to use, kept across sessions for catch-up (all
    ///   zero before a full synchronisation); nil: a copy of this encoder's own.
    public init(identity: VMIdentity, capabilities: Capabilities, compression: CompressionMode = .fast,
                workers: Int = ProcessInfo.processInfo.activeProcessorCount, pagesPerBatch: Int = 256, lastSent: AnonymousMemory? = nil) {
        self.identity = identity
        self.capabilities = capabilities
        self.pagesPerBatch = pagesPerBatch
        pageSize = Int(identity.pageSize)
        self.compression = compression
        encoders = (0..<max(1, workers)).map { _ in PageEncoder(pageSize: Int(identity.pageSize), capabilities: capabilities, compression: compression) }
        precondition(lastSent.map { $0.bytes.count == Int(identity.memorySize) } ?? true, "a last-sent copy of another size")
        lastSentMemory = lastSent ?? AnonymousMemory(size: Int(identity.memorySize), purpose: "the last-sent copy")
    }

    /// What encoding one epoch or sync round produced.
    public struct Output: Sendable {
        public var pages = 0
        public var diskWrites = 0
        public var diskBytes = 0
        public var rawBytes = 0
        public var wireBytes = 0
        public var digest: EpochDigest
        public var encodings: [PageEncoding: Int] = [:]
        /// The device state's bytes, and what its DEVICE_STATE payloads carried for it (without
        /// their epoch and offset fields, which count as framing).
        public var deviceStateRawBytes = 0
        public var deviceStateWireBytes = 0
        /// What the checkpoint costs besides its content: every frame's header, the fixed fields
        /// of content frames (epoch, count, offset), and the BEGIN and END frames whole (END
        /// carries the counts and the digest). Per-page and per-write entry headers count as content.
        public var framingBytes = 0

        public init(frameChecksum: EpochDigest.FrameChecksum) { digest = EpochDigest(frameChecksum: frameChecksum) }
    }

    /// How this session's content frames are checksummed (see `EpochDigest`).
    public var frameChecksum: EpochDigest.FrameChecksum { EpochDigest.FrameChecksum(agreed: capabilities) }

    /// An empty output whose digest uses this session's frame checksum.
    public func makeOutput() -> Output { Output(frameChecksum: frameChecksum) }

    /// Encodes pages read from guest memory (initial sync) as SYNC_PAGES frames. The guest may be
    /// running: each page is first copied, so that what is compressed and what is remembered as
    /// "last sent" are the same bytes even if the guest writes the page meanwhile.
    /// - Parameter progress: told the raw bytes of each frame once it is queued.
    public func encodeSync(pages indices: [UInt64], from memory: UnsafeRawBufferPointer, to sender: FrameSender,
                           into output: inout Output, progress: @escaping @Sendable (Int) -> Void = { _ in }) throws {
        try encodeBatches(type: .syncPages, epoch: 0, count: indices.count, live: true, to: sender, output: &output,
                          progress: progress) { position in
            let index = Int(indices[position])
            return (UInt64(index), UnsafeRawBufferPointer(rebasing: memory[(index * pageSize)..<((index + 1) * pageSize)]))
        }
    }

    /// Encodes disk changes of the initial sync (epoch 0) or of a checkpoint as disk-write frames.
    public func encodeDisk(_ changes: [DiskChange], epoch: UInt64, to sender: FrameSender, into output: inout Output) throws {
        guard !changes.isEmpty else { return }
        let (frames, entries) = DiskWriteBatch.frames(epoch: epoch, changes: changes, compression: compression)
        for frame in frames {
            try emit(frame, to: sender, output: &output, content: true)
            output.framingBytes += DiskWriteBatch.headerSize
        }
        output.diskWrites += entries
        let bytes = changes.reduce(0) { total, change in if case .write(_, let data) = change { total + data.length } else { total } }
        output.diskBytes += bytes
        output.rawBytes += bytes
    }

    /// What a catch-up checkpoint carries besides its capture (see `ReplicationBacklog`).
    struct CatchUpContent {
        /// Pages whose copy on the backup may differ from the last-sent copy: they go whole, from
        /// the capture when it has them, else from the last-sent copy (the guest has not written
        /// them since, or the capture would have them).
        let resentPages: Set<UInt64>
        /// Hands the disk changes that precede the capture's to its argument, in order, in batches.
        let precedingDisk: (([DiskChange]) throws -> Void) throws -> Void
    }

    /// Encodes one whole checkpoint: begin, page batches, device state, disk changes, end with
    /// counts and digest.
    /// - Parameter catchUp: the checkpoint catches a replica up after a lost connection.
    func encodeCheckpoint(_ captured: CapturedCheckpoint, epoch: UInt64, catchUp: CatchUpContent? = nil,
                          to sender: FrameSender) throws -> Output {
        var output = makeOutput()
        try emit(Message.checkpointBegin(epoch: epoch).frame, to: sender, output: &output, content: false)
        let resent = catchUp?.resentPages ?? []
        try encodeBatches(type: .pages, epoch: epoch, count: captured.pageIndices.count, live: false, to: sender, output: &output,
                          delta: { !resent.contains($0) }) { position in
            (captured.pageIndices[position], UnsafeRawBufferPointer(captured.page(at: position)))
        }
        if catchUp != nil {
            let unchanged = Array(resent.subtracting(captured.pageIndices)).sorted()
            // `live`: each page is copied first, because what it is read from is what it is remembered into.
            try encodeBatches(type: .pages, epoch: epoch, count: unchanged.count, live: true, to: sender, output: &output,
                              delta: { _ in false }) { [lastSent, pageSize] position in
                let index = Int(unchanged[position])
                return (UInt64(index), UnsafeRawBufferPointer(rebasing: lastSent[(index * pageSize)..<((index + 1) * pageSize)]))
            }
        }
        let deviceState = encodeDeviceState(captured.deviceState)
        var offset = 0
        while offset < deviceState.count {
            let end = min(offset + CheckpointEncoder.deviceStateChunk, deviceState.count)
            let chunk = DeviceStateChunk(epoch: epoch, offset: UInt64(offset), data: Array(deviceState[offset..<end]))
            try emit(Message.deviceState(chunk).frame, to: sender, output: &output, content: true)
            output.framingBytes += DeviceStateChunk.headerSize
            offset = end
        }
        output.deviceStateRawBytes = captured.deviceState.count
        output.deviceStateWireBytes = deviceState.count
        try catchUp?.precedingDisk { try encodeDisk($0, epoch: epoch, to: sender, into: &output) }
        try encodeDisk(captured.diskChanges, epoch: epoch, to: sender, into: &output)
        let summary = ContentSummary(epoch: epoch, pageCount: UInt64(output.pages), deviceStateBytes: UInt64(deviceState.count),
                                     diskWriteCount: UInt64(output.diskWrites), digest: output.digest.value)
        try emit(Message.checkpointEnd(summary).frame, to: sender, output: &output, content: false)
        return output
    }

    /// What the DEVICE_STATE chunks carry for `state`: with device-state-delta, the smaller of
    /// LZ4(state) and LZ4(state XOR the session's previous state); without, the state itself.
    private func encodeDeviceState(_ state: [UInt8]) -> [UInt8] {
        guard capabilities.contains(.deviceStateDelta) else { return state }
        defer { lastDeviceState = state }
        return DeviceStateCodec.encode(state, previous: lastDeviceState, compression: compression)
    }

    /// Makes the last-sent copy hold `captured`'s pages although they may not all have been sent
    /// (the session ended first): the next session's catch-up resends these pages whole, and
    /// takes the ones the guest did not write again from this copy.
    func remember(_ captured: CapturedCheckpoint) {
        for (position, index) in captured.pageIndices.enumerated() {
            UnsafeMutableRawBufferPointer(rebasing: lastSent[(Int(index) * pageSize)..<((Int(index) + 1) * pageSize)])
                .copyMemory(from: UnsafeRawBufferPointer(captured.page(at: position)))
        }
    }

    /// Makes `summary` for the sync frames encoded into `output`.
    public func syncSummary(_ output: Output) -> ContentSummary {
        ContentSummary(epoch: 0, pageCount: UInt64(output.pages), diskWriteCount: UInt64(output.diskWrites), digest: output.digest.value)
    }

    private func emit(_ frame: Frame, to sender: FrameSender, output: inout Output, content: Bool) throws {
        if content { output.digest.add(frame) }
        output.wireBytes += frame.bytes.count
        output.framingBytes += content ? Frame.headerSize : frame.bytes.count
        try sender.enqueue(frame)
    }

    /// Maps the last-sent copies of `indices` before the encoder reads them, one `madvise` per run
    /// of consecutive pages. A sync writes into a zeroed copy, where reading first and writing
    /// after costs a TLB flush on every core per page (see `AnonymousMemory.populate`).
    private func populateLastSent<Indices: Sequence<UInt64>>(of indices: Indices) {
        for run in Self.runs(of: indices) { lastSentMemory.populate(bytes: (run.lowerBound * pageSize)..<(run.upperBound * pageSize)) }
    }

    /// `indices` as runs of consecutive page numbers, in their order (a sync sends pages in
    /// ascending order, so a batch is usually one run).
    static func runs<Indices: Sequence<UInt64>>(of indices: Indices) -> [Range<Int>] {
        var runs: [Range<Int>] = []
        for index in indices.lazy.map({ Int($0) }) {
            if let last = runs.last, last.upperBound == index {
                runs[runs.count - 1] = last.lowerBound..<(index + 1)
            } else {
                runs.append(index..<(index + 1))
            }
        }
        return runs
    }

    /// Splits `count` pages into batches and encodes them on all workers. `page(position)` gives
    /// each page's number and bytes; `live` means those bytes may change while being read.
    private func encodeBatches(type: FrameType, epoch: UInt64, count: Int, live: Bool, to sender: FrameSender, output: inout Output,
                               progress: @escaping @Sendable (Int) -> Void = { _ in }, delta: (UInt64) -> Bool = { _ in true },
                               page: (Int) -> (UInt64, UnsafeRawBufferPointer)) throws {
        guard count > 0 else { return }
        let batches = (count + pagesPerBatch - 1) / pagesPerBatch
        let sink = OrderedSink(sender: sender, output: output, progress: progress)
        let workers = min(encoders.count, batches)
        withoutActuallyEscaping(page) { page in withoutActuallyEscaping(delta) { delta in
            let shared = UncheckedBox(page)
            let mayDelta = UncheckedBox(delta)
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                let encoder = encoders[worker]
                let snapshot = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: 64)
                defer { snapshot.deallocate() }
                while true {
                    guard let batch = sink.takeBatch(below: batches) else { return }
                    let range = (batch * pagesPerBatch)..<min(count, (batch + 1) * pagesPerBatch)
                    let pages = range.map { shared.value($0) }
                    if type == .syncPages { populateLastSent(of: pages.lazy.map(\.0)) }
                    var builder = PageBatchBuilder(type: type, epoch: epoch, capacity: range.count * encoder.maxEncodedSize)
                    // Counted by raw value: a dictionary would hash every page (3.5 % of the CPU time
                    // of a stream of random pages).
                    var counts = [Int](repeating: 0, count: PageEncoding.allCases.count)
                    for (index, page) in pages {
                        var bytes = page
                        if live {
                            snapshot.copyMemory(from: page)
                            bytes = UnsafeRawBufferPointer(snapshot)
                        }
                        let last = UnsafeMutableRawBufferPointer(rebasing: lastSent[(Int(index) * pageSize)..<((Int(index) + 1) * pageSize)])
                        counts[Int(encoder.append(page: bytes, index: index, lastSent: last, delta: mayDelta.value(index),
                                                  to: &builder).rawValue)] += 1
                    }
                    let frame = builder.finish()
                    let encodings = PageEncoding.allCases.filter { counts[Int($0.rawValue)] > 0 }.map { ($0, counts[Int($0.rawValue)]) }
                    sink.emit(frame, digest: frameChecksum(frame.bytes), pages: range.count, rawBytes: range.count * pageSize,
                              encodings: Dictionary(uniqueKeysWithValues: encodings))
                }
            }
        } }
        output = try sink.finish()
    }
}

extension CheckpointEncoder {
    /// Emits frames from several workers one at a time, folding each into the digest in the same
    /// order it is queued for sending.
    private final class OrderedSink: @unchecked Sendable {
        private let lock = NSLock()
        private let sender: FrameSender
        private var output: CheckpointEncoder.Output
        private var error: Error?
        private var nextBatch = 0

        private let progress: @Sendable (Int) -> Void

        init(sender: FrameSender, output: CheckpointEncoder.Output, progress: @escaping @Sendable (Int) -> Void) {
            self.sender = sender
            self.output = output
            self.progress = progress
        }

        /// The next batch number for a worker; nil when all are taken or sending failed.
        func takeBatch(below count: Int) -> Int? {
            lock.lock()
            defer { lock.unlock() }
            guard error == nil, nextBatch < count else { return nil }
            nextBatch += 1
            return nextBatch - 1
        }

        func emit(_ frame: Frame, digest: [UInt8], pages: Int, rawBytes: Int, encodings: [PageEncoding: Int]) {
            lock.lock()
            defer { lock.unlock() }
            guard error == nil else { return }
            do {
                try sender.enqueue(frame)
            } catch {
                self.error = error
                return
            }
            output.digest.add(frameDigest: digest)
            output.pages += pages
            output.rawBytes += rawBytes
            output.wireBytes += frame.bytes.count
            output.framingBytes += Frame.headerSize + PageBatch.headerSize
            output.encodings.merge(encodings, uniquingKeysWith: +)
            progress(rawBytes)
        }

        func finish() throws -> CheckpointEncoder.Output {
            if let error { throw error }
            return output
        }
    }

    /// Carries a non-Sendable closure into `concurrentPerform`, whose iterations only read through it.
    private struct UncheckedBox<T>: @unchecked Sendable {
        let value: T
        init(_ value: T) { self.value = value }
    }
}
