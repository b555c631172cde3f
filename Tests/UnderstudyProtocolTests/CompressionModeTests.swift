import Testing
@testable import UnderstudyProtocol

@Suite("LZ4 compression modes (fast and HC write the same block format)")
struct CompressionModeTests {
    static let pageSize = 4096
    static let highModes: [CompressionMode] = [.high(level: 1), .high(level: CompressionMode.defaultHighLevel), .high(level: 12)]

    /// The LZ4 block of `bytes` in `mode`, with room for the worst case.
    static func compressed(_ bytes: [UInt8], mode: CompressionMode) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: LZ4Block.bound(bytes.count))
        let size = bytes.withUnsafeBytes { source in out.withUnsafeMutableBytes { LZ4Block.compress(source, into: $0, mode: mode) } }
        precondition(size > 0, "LZ4 with a compressBound-sized buffer cannot fail")
        return Array(out[0..<size])
    }

    @Test("the text form parses and prints: lz4, lz4hc, lz4hc:N with N in 1...12")
    func textForm() {
        #expect(CompressionMode("lz4") == .fast)
        #expect(CompressionMode("lz4hc") == .high(level: 9))
        #expect(CompressionMode("lz4hc:1") == .high(level: 1))
        #expect(CompressionMode("lz4hc:12") == .high(level: 12))
        for invalid in ["", "lz4hc:0", "lz4hc:13", "lz4hc:-1", "lz4hc:", "lz4hc:nine", "lz4:9", "zstd", "LZ4"] {
            #expect(CompressionMode(invalid) == nil, "\"\(invalid)\" should not parse")
        }
        for mode in [CompressionMode.fast] + Self.highModes {
            #expect(CompressionMode(mode.description) == mode)
        }
    }

    @Test("a level outside 1...12 compresses as the nearest valid level")
    func levelsAreClamped() {
        var rng = SplitMix64(seed: 7)
        let text = PageFactory.text(Self.pageSize, &rng)
        #expect(Self.compressed(text, mode: .high(level: 0)) == Self.compressed(text, mode: .high(level: 1)))
        #expect(Self.compressed(text, mode: .high(level: -5)) == Self.compressed(text, mode: .high(level: 1)))
        #expect(Self.compressed(text, mode: .high(level: 99)) == Self.compressed(text, mode: .high(level: 12)))
    }

    @Test("HC returns 0 when its output does not fit, and the same block when it just fits", arguments: highModes)
    func highReportsNoFit(mode: CompressionMode) {
        var rng = SplitMix64(seed: 11)
        let text = PageFactory.text(Self.pageSize, &rng)
        let unconstrained = Self.compressed(text, mode: mode)
        #expect(unconstrained.count < Self.pageSize)
        for capacity in [unconstrained.count - 1, unconstrained.count / 2, 1] {
            var out = [UInt8](repeating: 0, count: capacity)
            let size = text.withUnsafeBytes { source in out.withUnsafeMutableBytes { LZ4Block.compress(source, into: $0, mode: mode) } }
            #expect(size == 0, "\(mode) into \(capacity) bytes (needs \(unconstrained.count))")
        }
        var exact = [UInt8](repeating: 0, count: unconstrained.count)
        let size = text.withUnsafeBytes { source in exact.withUnsafeMutableBytes { LZ4Block.compress(source, into: $0, mode: mode) } }
        #expect(size == unconstrained.count && exact == unconstrained)
    }

    @Test("HC pages of every kind decode with the unchanged decoder to the pages sent", arguments: highModes)
    func highPagesRoundTrip(mode: CompressionMode) throws {
        var rng = SplitMix64(seed: TestSeed.make("highPagesRoundTrip \(mode)"))
        let kinds = PageKind.allCases.flatMap { Array(repeating: $0, count: 4) }
        let scenarios = kinds.map { PageFactory.scenario($0, size: Self.pageSize, &rng) }
        var world = PageWorld(pageSize: Self.pageSize, pageCount: kinds.count)
        let encoder = PageEncoder(pageSize: Self.pageSize, capabilities: .supported, compression: mode)
        let decoder = PageDecoder(pageSize: Self.pageSize)
        #expect(encoder.compression == mode)
        for (epoch, pages) in [(UInt64(1), scenarios.map(\.before)), (2, scenarios.map(\.now))] {
            let (frame, _) = world.send(Array(pages.enumerated()).map { (index: $0.offset, bytes: $0.element) }, epoch: epoch, encoder: encoder)
            _ = try world.receive(frame, decoder: decoder, inPlace: true)
            #expect(world.replica == pages)
        }
    }

    @Test("HC pages of text are no larger in total than fast ones", arguments: highModes)
    func highPagesAreSmaller(mode: CompressionMode) throws {
        var rng = SplitMix64(seed: 23)
        let pages = (0..<64).map { _ in PageFactory.text(Self.pageSize, &rng) }
        func frameSize(_ compression: CompressionMode) -> Int {
            var world = PageWorld(pageSize: Self.pageSize, pageCount: pages.count)
            let encoder = PageEncoder(pageSize: Self.pageSize, capabilities: .supported, compression: compression)
            let (frame, encodings) = world.send(Array(pages.enumerated()).map { (index: $0.offset, bytes: $0.element) }, epoch: 1, encoder: encoder)
            #expect(encodings.allSatisfy { $0 == .lz4 })
            return frame.bytes.count
        }
        let fast = frameSize(.fast)
        let high = frameSize(mode)
        print("[highPagesAreSmaller] 64 text pages: fast \(fast) bytes, \(mode) \(high) bytes")
        #expect(high <= fast)
    }

    @Test("HC disk batches decode with the unchanged decoder to the changes, and are no larger than fast ones")
    func highDiskBatches() throws {
        var rng = SplitMix64(seed: TestSeed.make("highDiskBatches"))
        let text = (0..<(DiskWriteBatch.maxEntryBytes / Self.pageSize + 3)).flatMap { _ in PageFactory.text(Self.pageSize, &rng) }
        let changes: [DiskChange] = [
            .write(offset: 0, data: .bytes(text)),
            .flush,
            .write(offset: 1 << 30, data: .bytes(rng.bytes(5000))),
            .write(offset: 1 << 31, data: .zeroes(length: 1 << 20)),
            .write(offset: 12_288, data: .bytes(PageFactory.text(700, &rng))),
            .flush,
        ]
        func replay(_ frames: [Frame]) throws -> [DiskChange] {
            var replayed: [DiskChange] = []
            for frame in frames {
                let batch = try DiskWriteBatch(frame: frame)
                for entry in batch.entries { replayed.append(try batch.change(at: entry)) }
            }
            return replayed
        }
        let fast = DiskWriteBatch.frames(epoch: 4, changes: changes)
        for mode in Self.highModes {
            let high = DiskWriteBatch.frames(epoch: 4, changes: changes, compression: mode)
            #expect(high.entries == fast.entries)
            // The same packing, so the replays line up change by change.
            #expect(try replay(high.frames) == replay(fast.frames))
            let fastBytes = fast.frames.reduce(0) { $0 + $1.bytes.count }
            let highBytes = high.frames.reduce(0) { $0 + $1.bytes.count }
            print("[highDiskBatches] fast \(fastBytes) bytes, \(mode) \(highBytes) bytes")
            #expect(highBytes <= fastBytes)
        }
        // The big write arrives cut into pieces; joined up it is the original.
        let pieces = try replay(fast.frames).compactMap { change -> [UInt8]? in
            guard case .write(let offset, .bytes(let bytes)) = change, offset < 1 << 30, bytes.count > 700 else { return nil }
            return bytes
        }
        #expect(pieces.joined().elementsEqual(text))
    }
}
