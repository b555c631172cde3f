import Foundation
import Testing
@testable import UnderstudyProtocol

// MARK: - Reproducible randomness

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough to drive tests. Every test
/// that uses it prints its seed, so a failure can be replayed with `UNDERSTUDY_TEST_SEED=<seed>`.
struct SplitMix64: RandomNumberGenerator {
    private(set) var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var i = 0
        while i < count {
            var word = next()
            for _ in 0..<8 where i < count {
                out[i] = UInt8(truncatingIfNeeded: word)
                word >>= 8
                i += 1
            }
        }
        return out
    }

    mutating func int(in range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &self) }
    mutating func int(in range: Range<Int>) -> Int { Int.random(in: range, using: &self) }
    mutating func bool(_ probability: Double = 0.5) -> Bool { Double.random(in: 0..<1, using: &self) < probability }
    mutating func byte() -> UInt8 { UInt8(truncatingIfNeeded: next()) }
}

enum TestSeed {
    /// The seed for `test`: `UNDERSTUDY_TEST_SEED` when set (decimal or 0x-hex), a fresh one otherwise.
    /// Printed either way so that any failure can be replayed.
    static func make(_ test: String) -> UInt64 {
        let seed: UInt64
        if let text = ProcessInfo.processInfo.environment["UNDERSTUDY_TEST_SEED"],
           let value = text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text) {
            seed = value
        } else {
            seed = UInt64.random(in: 0 ... .max)
        }
        print("[\(test)] seed \(seed) — replay with UNDERSTUDY_TEST_SEED=\(seed)")
        return seed
    }
}

// MARK: - Pages

/// Kinds of page content the codec must handle; each says what the sender held before.
enum PageKind: CaseIterable, Sendable, CustomStringConvertible {
    /// An all-zero page (the receiver held something else).
    case zero
    /// Incompressible bytes.
    case random
    /// Text-like, LZ4-compressible content.
    case text
    /// Mostly zero with a few short runs of data.
    case sparse
    /// A short repeating pattern (very compressible).
    case pattern
    /// The previously sent page with 1 to 8 bytes changed: the XOR delta must win.
    case fewBytesChanged
    /// Exactly the previously sent (non-zero) page.
    case identical
    /// New content where the receiver's copy is still all zero.
    case lastSentZero

    var description: String {
        switch self {
        case .zero: "zero"
        case .random: "random"
        case .text: "text"
        case .sparse: "sparse"
        case .pattern: "pattern"
        case .fewBytesChanged: "fewBytesChanged"
        case .identical: "identical"
        case .lastSentZero: "lastSentZero"
        }
    }
}

enum PageFactory {
    static let words = [
        "the", "replica", "checkpoint", "epoch", "memory", "page", "backup", "primary", "frame", "digest",
        "commit", "kernel", "buffer", "socket", "thread", "while", "return", "struct", "value", "error",
        "of", "and", "to", "in", "is", "for", "that", "with", "on", "as", "by", "at", "from", "or",
        "Understudy", "Remus", "{", "}", "(", ")", ";", "0x1f", "42", "NULL", "int", "void", "let", "var",
    ]

    static func zero(_ size: Int) -> [UInt8] { [UInt8](repeating: 0, count: size) }

    static func random(_ size: Int, _ rng: inout SplitMix64) -> [UInt8] {
        var page = rng.bytes(size)
        // All-zero random pages are astronomically unlikely, but keep the kind honest.
        if page.allSatisfy({ $0 == 0 }) { page[0] = 1 }
        return page
    }

    static func text(_ size: Int, _ rng: inout SplitMix64) -> [UInt8] {
        var page: [UInt8] = []
        page.reserveCapacity(size + 16)
        while page.count < size {
            page.append(contentsOf: words[rng.int(in: 0..<words.count)].utf8)
            page.append(rng.int(in: 0..<8) == 0 ? 0x0A : 0x20)
        }
        return Array(page.prefix(size))
    }

    static func sparse(_ size: Int, _ rng: inout SplitMix64) -> [UInt8] {
        var page = zero(size)
        for _ in 0..<rng.int(in: 1...6) {
            let length = rng.int(in: 1...24)
            let start = rng.int(in: 0...(size - length))
            for i in start..<(start + length) { page[i] = rng.byte() | 1 }
        }
        return page
    }

    static func pattern(_ size: Int, _ rng: inout SplitMix64) -> [UInt8] {
        let unit = random(rng.int(in: 1...16), &rng)
        return (0..<size).map { unit[$0 % unit.count] }
    }

    /// `base` with `changes` distinct bytes changed (each changed byte differs from the original).
    static func mutated(_ base: [UInt8], changes: Int, _ rng: inout SplitMix64) -> [UInt8] {
        var page = base
        var positions = Set<Int>()
        while positions.count < changes { positions.insert(rng.int(in: 0..<base.count)) }
        for position in positions { page[position] ^= (rng.byte() | 1) }
        return page
    }

    /// A non-zero page (text or random).
    static func nonZero(_ size: Int, _ rng: inout SplitMix64) -> [UInt8] {
        rng.bool() ? text(size, &rng) : random(size, &rng)
    }

    /// (what the receiver holds beforehand, the page to send now) for `kind`.
    static func scenario(_ kind: PageKind, size: Int, _ rng: inout SplitMix64) -> (before: [UInt8], now: [UInt8]) {
        switch kind {
        case .zero: (rng.bool(0.7) ? nonZero(size, &rng) : zero(size), zero(size))
        case .random: (anyBase(size, &rng), random(size, &rng))
        case .text: (anyBase(size, &rng), text(size, &rng))
        case .sparse: (anyBase(size, &rng), sparse(size, &rng))
        case .pattern: (anyBase(size, &rng), pattern(size, &rng))
        case .fewBytesChanged:
            { let base = nonZero(size, &rng); return (base, mutated(base, changes: rng.int(in: 1...8), &rng)) }()
        case .identical: { let base = nonZero(size, &rng); return (base, base) }()
        case .lastSentZero: (zero(size), nonZero(size, &rng))
        }
    }

    private static func anyBase(_ size: Int, _ rng: inout SplitMix64) -> [UInt8] {
        switch rng.int(in: 0..<3) {
        case 0: zero(size)
        case 1: text(size, &rng)
        default: random(size, &rng)
        }
    }

    /// Cuts a file into whole pages (the last partial page is zero-padded). Empty when unreadable.
    static func filePages(_ path: String, pageSize: Int, limit: Int = .max) -> [[UInt8]] {
        guard let data = FileManager.default.contents(atPath: path), !data.isEmpty else { return [] }
        let bytes = [UInt8](data)
        var pages: [[UInt8]] = []
        var offset = 0
        while offset < bytes.count, pages.count < limit {
            var page = Array(bytes[offset..<min(offset + pageSize, bytes.count)])
            if page.count < pageSize { page += zero(pageSize - page.count) }
            pages.append(page)
            offset += pageSize
        }
        return pages
    }
}

/// The sender's "last sent" copies and the receiver's replica of a small VM, kept page by page.
/// `send` encodes through `PageEncoder` + `PageBatchBuilder`; `receive` parses with `PageBatch` and
/// decodes with `PageDecoder`, using the replica's copy as the XOR base.
struct PageWorld {
    let pageSize: Int
    var lastSent: [[UInt8]]
    var replica: [[UInt8]]

    init(pageSize: Int, pageCount: Int) {
        self.pageSize = pageSize
        lastSent = Array(repeating: PageFactory.zero(pageSize), count: pageCount)
        replica = lastSent
    }

    var pageCount: Int { lastSent.count }

    /// Encodes `pages` (in order; an index may repeat) into one batch frame.
    /// Returns the frame and the encoding the encoder reported for each page.
    mutating func send(_ pages: [(index: Int, bytes: [UInt8])], epoch: UInt64, encoder: PageEncoder,
                       type: FrameType = .pages) -> (Frame, [PageEncoding]) {
        var builder = PageBatchBuilder(type: type, epoch: epoch, capacity: pages.count * encoder.maxEncodedSize)
        var encodings: [PageEncoding] = []
        for (index, bytes) in pages {
            let encoding = bytes.withUnsafeBytes { page in
                lastSent[index].withUnsafeMutableBytes { last in
                    encoder.append(page: page, index: UInt64(index), lastSent: last, to: &builder)
                }
            }
            encodings.append(encoding)
        }
        #expect(builder.count == pages.count)
        let byteCount = builder.byteCount
        let frame = builder.finish()
        #expect(frame.bytes.count == byteCount)
        #expect(builder.byteCount == 0 && builder.count == 0, "finish hands everything over")
        return (frame, encodings)
    }

    /// Parses `frame` and applies every entry to the replica. `inPlace` decodes with the replica
    /// page as both base and destination; otherwise into a separate buffer (and the base must not change).
    mutating func receive(_ frame: Frame, decoder: PageDecoder, inPlace: Bool) throws -> PageBatch {
        let batch = try PageBatch(frame: frame, pageSize: pageSize, pageCount: UInt64(pageCount))
        for entry in batch.entries {
            let index = Int(entry.index)
            if inPlace {
                try replica[index].withUnsafeMutableBytes { page in
                    try decoder.decode(entry, of: batch, base: UnsafeRawBufferPointer(page), into: page)
                }
            } else {
                let before = replica[index]
                var out = [UInt8](repeating: 0xA5, count: pageSize)
                try before.withUnsafeBytes { base in
                    try out.withUnsafeMutableBytes { try decoder.decode(entry, of: batch, base: base, into: $0) }
                }
                #expect(replica[index] == before, "decoding must not modify the base page")
                replica[index] = out
            }
        }
        return batch
    }
}

enum LZ4Oracle {
    /// The LZ4 block size of `bytes` with an unconstrained output buffer.
    static func size(_ bytes: [UInt8]) -> Int {
        var out = [UInt8](repeating: 0, count: LZ4Block.bound(bytes.count))
        let size = bytes.withUnsafeBytes { source in out.withUnsafeMutableBytes { LZ4Block.compress(source, into: $0) } }
        precondition(size > 0, "LZ4 with a compressBound-sized buffer cannot fail")
        return size
    }

    /// The smallest legal encoding for `page` given the receiver's copy and the capabilities, as
    /// (encoding, bytes of data on the wire). Ties between the two LZ4 forms may go either way.
    /// The delta is no candidate when the encoder skips it (`deltaSkipped`).
    static func best(page: [UInt8], lastSent: [UInt8], capabilities: Capabilities) -> (size: Int, plain: Int?, delta: Int?) {
        let pageSize = page.count
        if page.allSatisfy({ $0 == 0 }) { return (0, nil, nil) }
        guard capabilities.contains(.lz4Pages) else { return (pageSize, nil, nil) }
        let plain = size(page)
        var delta: Int?
        if capabilities.contains(.xorDelta), !lastSent.allSatisfy({ $0 == 0 }), !deltaSkipped(page: page, lastSent: lastSent, plain: plain) {
            delta = size(zip(page, lastSent).map { $0 ^ $1 })
        }
        var best = pageSize
        if plain < pageSize { best = min(best, plain) }
        if let delta, delta < pageSize { best = min(best, delta) }
        return (best, plain, delta)
    }
}

extension LZ4Oracle {
    /// The encoder's one shortcut: a page LZ4 cannot shrink goes raw without compressing its XOR
    /// when fewer than one in eight bytes of the XOR are zero, sampling 8 bytes every 128.
    static func deltaSkipped(page: [UInt8], lastSent: [UInt8], plain: Int) -> Bool {
        guard plain >= page.count else { return false }
        var zeroBytes = 0
        var sampled = 0
        for offset in stride(from: 0, through: page.count - 8, by: 128) {
            zeroBytes += (offset..<(offset + 8)).filter { page[$0] == lastSent[$0] }.count
            sampled += 8
        }
        return zeroBytes * 8 < sampled
    }
}

/// Bytes an entry occupies on the wire after its header (what the codec tries to minimise).
func wireDataSize(_ entry: PageBatch.Entry, pageSize: Int) -> Int {
    switch entry.encoding {
    case .zero: 0
    case .raw: pageSize
    case .lz4, .lz4Delta: entry.data.count
    }
}

// MARK: - Sessions

enum Fixtures {
    static let identity = VMIdentity(id: "vm-test-01", memorySize: 64 * 4096, pageSize: 4096)

    static func hello(_ identity: VMIdentity = Fixtures.identity, version: UInt16 = understudyProtocolVersion,
                      capabilities: Capabilities = .supported, required: Capabilities = .supported,
                      node: String = "primary-a") -> Frame {
        Message.hello(Hello(version: version, identity: identity, capabilities: capabilities,
                            requiredCapabilities: required, nodeName: node)).frame
    }

    static func frame(_ message: Message) -> Frame { message.frame }

    /// The epoch digest of `frames` as a session that agreed on `Capabilities.supported` computes it.
    static func digest(_ frames: [Frame], frameChecksum: EpochDigest.FrameChecksum = .xxh3) -> [UInt8] {
        var digest = EpochDigest(frameChecksum: frameChecksum)
        for frame in frames { digest.add(frame) }
        return digest.value
    }
}

/// The frames of one checkpoint (or of the initial sync when `epoch` is 0), built with the real
/// encoders, and the totals an honest primary would announce for them.
struct ContentScript {
    var epoch: UInt64
    /// Content frames in sending order (page batches, device-state chunks, disk-write batches).
    var frames: [Frame] = []
    var pageCount: UInt64 = 0
    var deviceStateBytes: UInt64 = 0
    var diskWriteCount: UInt64 = 0
    /// What the primary's memory looks like once this content is applied (pages only).
    var pages: [Int: [UInt8]] = [:]
    var deviceState: [UInt8] = []
    var diskWrites: [(offset: UInt64, data: DiskWriteData)] = []

    init(epoch: UInt64) { self.epoch = epoch }

    mutating func addPages(_ pages: [(index: Int, bytes: [UInt8])], world: inout PageWorld, encoder: PageEncoder) {
        let (frame, _) = world.send(pages, epoch: epoch, encoder: encoder, type: epoch == 0 ? .syncPages : .pages)
        frames.append(frame)
        pageCount += UInt64(pages.count)
        for (index, bytes) in pages { self.pages[index] = bytes }
    }

    mutating func addDeviceState(_ blob: [UInt8], chunkSize: Int) {
        var offset = 0
        while offset < blob.count {
            let chunk = Array(blob[offset..<min(offset + chunkSize, blob.count)])
            frames.append(Message.deviceState(DeviceStateChunk(epoch: epoch, offset: deviceStateBytes, data: chunk)).frame)
            deviceStateBytes += UInt64(chunk.count)
            deviceState += chunk
            offset += chunkSize
        }
    }

    mutating func addDiskWrites(_ writes: [(offset: UInt64, data: DiskWriteData)]) {
        frames.append(DiskWriteBatch.frame(epoch: epoch, changes: writes.map { .write(offset: $0.offset, data: $0.data) }))
        diskWriteCount += UInt64(writes.count)
        diskWrites += writes
    }

    var summary: ContentSummary {
        ContentSummary(epoch: epoch, pageCount: pageCount, deviceStateBytes: deviceStateBytes,
                       diskWriteCount: diskWriteCount, digest: Fixtures.digest(frames))
    }
}

extension BackupSessionStateMachine.Action {
    var closeError: ProtocolError? { if case .close(let error) = self { error } else { nil } }
    var isClose: Bool { closeError != nil }
    var rejection: SessionClose? { if case .reject(let close) = self { close } else { nil } }
    /// Whether this action ends the session.
    var endsSession: Bool {
        switch self {
        case .close, .reject, .peerClosed: true
        default: false
        }
    }
}

extension PrimarySessionStateMachine.Action {
    var closeError: ProtocolError? { if case .close(let error) = self { error } else { nil } }
    var endsSession: Bool {
        switch self {
        case .close, .peerClosed: true
        default: false
        }
    }
}

extension ProtocolError {
    /// The case name, for assertions that only care which kind of error it is.
    var kind: String {
        switch self {
        case .truncated: "truncated"
        case .malformed: "malformed"
        case .oversized: "oversized"
        case .unknownFrameType: "unknownFrameType"
        case .unexpected: "unexpected"
        case .notUnderstudy: "notUnderstudy"
        case .versionMismatch: "versionMismatch"
        case .identityMismatch: "identityMismatch"
        case .capabilityMismatch: "capabilityMismatch"
        case .verificationFailed: "verificationFailed"
        case .rejected: "rejected"
        }
    }
}

/// Builds a frame from raw parts, bypassing every encoder (for hand-made malformed payloads).
func rawFrame(_ type: FrameType, _ body: (inout WireWriter) -> Void) -> Frame { Frame(type, body) }

/// Decodes a frame, returning the error instead of throwing it.
func decode(_ frame: Frame, identity: VMIdentity?) -> Result<Message, ProtocolError> {
    do throws(ProtocolError) {
        return .success(try Message(frame: frame, identity: identity))
    } catch {
        return .failure(error)
    }
}
