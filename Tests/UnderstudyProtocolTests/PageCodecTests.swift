import PropertyBased
import Testing
@testable import UnderstudyProtocol

/// Capability sets the page codec is exercised with: raw only, LZ4 without delta, everything.
let codecCapabilitySets: [Capabilities] = [[], [.lz4Pages], .supported, [.xorDelta]]

@Suite("Page codec (PageEncoder → PageBatchBuilder → PageBatch → PageDecoder)")
struct PageCodecTests {
    static let pageSize = 4096

    /// Checks one sent page: the encoding is the smallest legal one and matches what the kind demands.
    static func checkChoice(kind: PageKind?, page: [UInt8], before: [UInt8], entry: PageBatch.Entry,
                            reported: PageEncoding, capabilities: Capabilities, pageSize: Int) {
        #expect(entry.encoding == reported, "batch entry encoding differs from what append() returned")
        let actual = wireDataSize(entry, pageSize: pageSize)
        let oracle = LZ4Oracle.best(page: page, lastSent: before, capabilities: capabilities)
        let context = "kind \(kind.map(String.init(describing:)) ?? "file"), caps \(capabilities), chose \(entry.encoding) \(actual) bytes; plain \(oracle.plain.map(String.init) ?? "-") delta \(oracle.delta.map(String.init) ?? "-")"
        // Never larger than any alternative that was allowed.
        #expect(actual == oracle.size, "\(context)")
        switch entry.encoding {
        case .zero:
            #expect(page.allSatisfy { $0 == 0 }, "\(context)")
        case .raw:
            #expect(!page.allSatisfy { $0 == 0 }, "\(context)")
            #expect((oracle.plain ?? pageSize) >= pageSize && (oracle.delta ?? pageSize) >= pageSize,
                    "raw chosen although compression helps: \(context)")
        case .lz4:
            #expect(capabilities.contains(.lz4Pages), "\(context)")
            #expect(actual == oracle.plain, "\(context)")
        case .lz4Delta:
            #expect(capabilities.contains(.lz4Pages) && capabilities.contains(.xorDelta), "\(context)")
            #expect(!before.allSatisfy { $0 == 0 }, "delta against an all-zero copy: \(context)")
            #expect(actual == oracle.delta, "\(context)")
        }
        if !capabilities.contains(.lz4Pages) {
            #expect(entry.encoding == .zero || entry.encoding == .raw, "\(context)")
        }
        guard let kind else { return }
        switch kind {
        case .zero:
            #expect(entry.encoding == .zero, "\(context)")
        case .random:
            // 4 KiB of random bytes never LZ4-compress, and a delta against anything else is random too.
            #expect(entry.encoding == .raw, "\(context)")
        case .text, .sparse, .pattern:
            if capabilities.contains(.lz4Pages) {
                #expect(entry.encoding == .lz4 || entry.encoding == .lz4Delta, "\(context)")
                // Short pages leave LZ4 less to work with.
                #expect(actual < pageSize * (pageSize >= 4096 ? 3 : 7) / (pageSize >= 4096 ? 4 : 8), "\(context)")
            }
        case .fewBytesChanged:
            if capabilities.isSuperset(of: [.lz4Pages, .xorDelta]) {
                #expect(entry.encoding == .lz4Delta, "\(context)")
                // LZ4 spends one length byte per 255 bytes of a long zero run.
                #expect(actual <= 128 + pageSize / 255, "a delta of at most 8 changed bytes should be tiny: \(context)")
            }
        case .identical:
            if capabilities.isSuperset(of: [.lz4Pages, .xorDelta]) {
                #expect(entry.encoding == .lz4Delta || entry.encoding == .lz4, "\(context)")
                #expect(actual <= 16 + pageSize / 255, "resending an unchanged page should cost a few bytes: \(context)")
            }
        case .lastSentZero:
            #expect(entry.encoding != .lz4Delta, "\(context)")
        }
    }

    /// Sends `kinds` (one page index each, plus a second send of a few indices in the same batch),
    /// after first establishing the receiver's copies, and checks everything.
    static func runScenario(seed: UInt64, kinds: [PageKind], capabilities: Capabilities, pageSize: Int = pageSize,
                            inPlace: Bool) throws {
        var rng = SplitMix64(seed: seed)
        var world = PageWorld(pageSize: pageSize, pageCount: kinds.count)
        let encoder = PageEncoder(pageSize: pageSize, capabilities: capabilities)
        let decoder = PageDecoder(pageSize: pageSize)
        let scenarios = kinds.map { PageFactory.scenario($0, size: pageSize, &rng) }

        // Round 1: bring the receiver's copy of every page to `before` (as an earlier epoch would).
        let establish = scenarios.enumerated().filter { !$0.element.before.allSatisfy { $0 == 0 } }
            .map { (index: $0.offset, bytes: $0.element.before) }
        if !establish.isEmpty {
            let (frame, _) = world.send(establish, epoch: 1, encoder: encoder)
            _ = try world.receive(frame, decoder: decoder, inPlace: inPlace)
        }
        for (index, scenario) in scenarios.enumerated() {
            #expect(world.lastSent[index] == scenario.before)
            #expect(world.replica[index] == scenario.before)
        }

        // Round 2: the pages under test, then a few indices again in the same batch (order matters).
        var pages = scenarios.enumerated().map { (index: $0.offset, bytes: $0.element.now) }
        var expectedKinds: [PageKind?] = kinds
        var befores = scenarios.map(\.before)
        var current = scenarios.map(\.now) // what the receiver will hold when each entry is decoded
        for _ in 0..<min(3, kinds.count) {
            let index = rng.int(in: 0..<kinds.count)
            let again = PageFactory.mutated(current[index], changes: rng.int(in: 1...4), &rng)
            pages.append((index, again))
            expectedKinds.append(nil)
            befores.append(current[index])
            current[index] = again
        }
        let (frame, reported) = world.send(pages, epoch: 2, encoder: encoder)
        let batch = try world.receive(frame, decoder: decoder, inPlace: inPlace)
        #expect(batch.epoch == 2)
        #expect(batch.entries.count == pages.count)
        #expect(batch.entries.map { Int($0.index) } == pages.map(\.index))
        for (position, entry) in batch.entries.enumerated() {
            checkChoice(kind: expectedKinds[position], page: pages[position].bytes, before: befores[position],
                        entry: entry, reported: reported[position], capabilities: capabilities, pageSize: pageSize)
        }
        // The receiver matches the sender exactly, and the encoder's last-sent copies are the pages sent.
        var latest = [Int: [UInt8]]()
        for (index, bytes) in pages { latest[index] = bytes }
        for index in 0..<kinds.count {
            #expect(world.replica[index] == latest[index], "page \(index) (\(kinds[index])) differs after decoding")
            #expect(world.lastSent[index] == latest[index], "encoder did not update lastSent of page \(index)")
        }
    }

    @Test("random mixes of page kinds round-trip with the smallest encoding", arguments: codecCapabilitySets)
    func propertyRoundTrip(capabilities: Capabilities) async throws {
        await propertyCheck(count: 15, input: Gen.uint64(), Gen<PageKind>.case.array(of: 1...48), Gen.bool) {
            seed, kinds, inPlace in
            try Self.runScenario(seed: seed, kinds: kinds, capabilities: capabilities, inPlace: inPlace)
        }
    }

    @Test("every kind alone, with every capability set", arguments: PageKind.allCases, codecCapabilitySets)
    func eachKind(kind: PageKind, capabilities: Capabilities) throws {
        for seed in UInt64(1)...3 {
            try Self.runScenario(seed: seed &* 7919, kinds: Array(repeating: kind, count: 8), capabilities: capabilities,
                                 inPlace: seed % 2 == 0)
        }
    }

    @Test("other page sizes", arguments: [512, 8192, 65536])
    func otherPageSizes(pageSize: Int) throws {
        let kinds = pageSize > 8192 ? PageKind.allCases : PageKind.allCases + PageKind.allCases
        try Self.runScenario(seed: 0x5EED_0000 + UInt64(pageSize), kinds: kinds, capabilities: .supported,
                             pageSize: pageSize, inPlace: true)
        try Self.runScenario(seed: 0x5EED_0001 + UInt64(pageSize), kinds: kinds, capabilities: [.lz4Pages],
                             pageSize: pageSize, inPlace: false)
    }

    @Test("concrete encodings of canonical pages")
    func concreteEncodings() throws {
        let size = Self.pageSize
        var world = PageWorld(pageSize: size, pageCount: 4)
        let encoder = PageEncoder(pageSize: size, capabilities: .supported)
        let decoder = PageDecoder(pageSize: size)
        var rng = SplitMix64(seed: 42)
        let random = PageFactory.random(size, &rng)
        let ones = [UInt8](repeating: 0x41, count: size)

        // Zero page: a flag, no data at all.
        var (frame, encodings) = world.send([(0, PageFactory.zero(size))], epoch: 1, encoder: encoder)
        #expect(encodings == [.zero])
        #expect(frame.bytes.count == Frame.headerSize + 8 + 4 + 9)
        // Random page with a zero last-sent copy: raw, exactly the page.
        (frame, encodings) = world.send([(1, random)], epoch: 1, encoder: encoder)
        #expect(encodings == [.raw])
        #expect(frame.bytes.count == Frame.headerSize + 8 + 4 + 9 + size)
        #expect(Array(frame.bytes.suffix(size)) == random)
        _ = try world.receive(frame, decoder: decoder, inPlace: true)
        // A constant page compresses to a handful of bytes.
        (frame, encodings) = world.send([(2, ones)], epoch: 1, encoder: encoder)
        #expect(encodings == [.lz4])
        #expect(frame.bytes.count - (Frame.headerSize + 12 + 13) == LZ4Oracle.size(ones))
        #expect(LZ4Oracle.size(ones) <= 40)
        _ = try world.receive(frame, decoder: decoder, inPlace: true)
        // The random page again with one byte changed: delta, tiny.
        var changed = random
        changed[1000] ^= 0xFF
        (frame, encodings) = world.send([(1, changed)], epoch: 2, encoder: encoder)
        #expect(encodings == [.lz4Delta])
        var delta = PageFactory.zero(size)
        delta[1000] = 0xFF
        #expect(frame.bytes.count - (Frame.headerSize + 12 + 13) == LZ4Oracle.size(delta))
        #expect(LZ4Oracle.size(delta) <= 48)
        _ = try world.receive(frame, decoder: decoder, inPlace: false)
        #expect(world.replica[1] == changed)
        #expect(world.lastSent[1] == changed)
        // Now zero again: the zero flag, and the last-sent copy becomes zero.
        (frame, encodings) = world.send([(1, PageFactory.zero(size))], epoch: 3, encoder: encoder)
        #expect(encodings == [.zero])
        #expect(world.lastSent[1] == PageFactory.zero(size))
        _ = try world.receive(frame, decoder: decoder, inPlace: true)
        #expect(world.replica[1] == PageFactory.zero(size))
    }

    @Test("real binaries cut into 4 KiB pages", arguments: codecCapabilitySets)
    func realBinaries(capabilities: Capabilities) throws {
        let size = Self.pageSize
        let files = ["/usr/bin/ls", "/bin/bash", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/bin/sh"]
        let images = files.map { PageFactory.filePages($0, pageSize: size, limit: 160) }.filter { !$0.isEmpty }
        try #require(images.count >= 2, "need at least two readable binaries among \(files)")
        let pageCount = images.map(\.count).max()!
        var world = PageWorld(pageSize: size, pageCount: pageCount)
        let encoder = PageEncoder(pageSize: size, capabilities: capabilities)
        let decoder = PageDecoder(pageSize: size)
        var rng = SplitMix64(seed: 7)
        var epoch: UInt64 = 0
        var totalWire = 0
        var totalRaw = 0
        // Each binary in turn overwrites the same pages (the previous binary is the XOR base), then
        // the last image is resent with a few bytes changed per page, as a dirtied page would be.
        var sequence = images
        sequence.append(images.last!.map { PageFactory.mutated($0, changes: rng.int(in: 1...6), &rng) })
        for image in sequence {
            epoch += 1
            var start = 0
            while start < image.count {
                let chunk = (start..<min(start + 128, image.count)).map { (index: $0, bytes: image[$0]) }
                let befores = chunk.map { world.lastSent[$0.index] }
                let (frame, reported) = world.send(chunk, epoch: epoch, encoder: encoder)
                let batch = try world.receive(frame, decoder: decoder, inPlace: epoch % 2 == 0)
                for (position, entry) in batch.entries.enumerated() {
                    Self.checkChoice(kind: nil, page: chunk[position].bytes, before: befores[position], entry: entry,
                                     reported: reported[position], capabilities: capabilities, pageSize: size)
                    totalWire += wireDataSize(entry, pageSize: size)
                    totalRaw += size
                }
                for page in chunk {
                    #expect(world.replica[page.index] == page.bytes, "epoch \(epoch) page \(page.index)")
                    #expect(world.lastSent[page.index] == page.bytes)
                }
                start += 128
            }
        }
        if capabilities.contains(.lz4Pages) {
            #expect(totalWire < totalRaw * 3 / 4, "binaries should compress: \(totalWire) of \(totalRaw) bytes")
        } else {
            #expect(totalWire <= totalRaw)
        }
        if capabilities.isSuperset(of: [.lz4Pages, .xorDelta]) {
            // The last round differs in a few bytes per page: it must cost far less than the pages.
            let last = sequence.last!
            var lastWorld = world
            let resend = (0..<min(64, last.count)).map { (index: $0, bytes: last[$0]) }
            let (frame, encodings) = lastWorld.send(resend, epoch: epoch + 1, encoder: encoder)
            #expect(encodings.allSatisfy { $0 == .lz4Delta || $0 == .zero || $0 == .lz4 })
            #expect(frame.bytes.count < 64 * 64, "identical resend of 64 pages took \(frame.bytes.count) bytes")
        }
    }

    @Test("an incompressible page whose XOR delta shows no zero bytes in a sample goes raw; with zero bytes the delta is tried")
    func incompressibleDeltaShortcut() throws {
        let size = Self.pageSize
        var rng = SplitMix64(seed: 11)
        var world = PageWorld(pageSize: size, pageCount: 3)
        let encoder = PageEncoder(pageSize: size, capabilities: .supported)
        let decoder = PageDecoder(pageSize: size)
        let old = (0..<3).map { _ in PageFactory.random(size, &rng) }
        var (frame, _) = world.send(old.enumerated().map { (index: $0.offset, bytes: $0.element) }, epoch: 1, encoder: encoder)
        _ = try world.receive(frame, decoder: decoder, inPlace: true)
        // Every bit flipped: the XOR is 0xFF throughout, not one zero byte, so the delta is not
        // tried although LZ4 would shrink it (the one kind of page the shortcut sends larger).
        let inverted = old[0].map { ~$0 }
        // Each 64-bit word incremented: every word changes, but the XOR is mostly zero bytes.
        var counters = old[1]
        counters.withUnsafeMutableBytes { words in
            for offset in stride(from: 0, to: size, by: 8) {
                words.storeBytes(of: words.load(fromByteOffset: offset, as: UInt64.self) &+ 1, toByteOffset: offset, as: UInt64.self)
            }
        }
        // The first half rewritten with new random bytes: the unchanged half makes the delta win.
        let halfRewritten = Array(PageFactory.random(size, &rng).prefix(size / 2)) + old[2].suffix(size / 2)
        var encodings: [PageEncoding]
        (frame, encodings) = world.send([(0, inverted), (1, counters), (2, halfRewritten)], epoch: 2, encoder: encoder)
        #expect(encodings == [.raw, .lz4Delta, .lz4Delta])
        #expect(LZ4Oracle.size(zip(inverted, old[0]).map { $0 ^ $1 }) < 64, "the inverted page's delta compresses")
        _ = try world.receive(frame, decoder: decoder, inPlace: false)
        #expect(world.replica[0] == inverted)
        #expect(world.replica[1] == counters)
        #expect(world.replica[2] == halfRewritten)
    }

    @Test("XOR base may be the destination itself or a separate buffer")
    func deltaBaseAliasing() throws {
        let size = Self.pageSize
        var rng = SplitMix64(seed: 99)
        let base = PageFactory.text(size, &rng)
        let next = PageFactory.mutated(base, changes: 5, &rng)
        var sender = base
        var builder = PageBatchBuilder(type: .pages, epoch: 9, capacity: size + 64)
        let encoder = PageEncoder(pageSize: size, capabilities: .supported)
        let encoding = next.withUnsafeBytes { page in
            sender.withUnsafeMutableBytes { encoder.append(page: page, index: 3, lastSent: $0, to: &builder) }
        }
        #expect(encoding == .lz4Delta)
        #expect(sender == next)
        let batch = try PageBatch(frame: builder.finish(), pageSize: size, pageCount: 4)
        let decoder = PageDecoder(pageSize: size)
        // In place.
        var inPlace = base
        try inPlace.withUnsafeMutableBytes { try decoder.decode(batch.entries[0], of: batch, base: UnsafeRawBufferPointer($0), into: $0) }
        #expect(inPlace == next)
        // Separate destination; the base stays intact.
        var out = [UInt8](repeating: 0xEE, count: size)
        try base.withUnsafeBytes { b in try out.withUnsafeMutableBytes { try decoder.decode(batch.entries[0], of: batch, base: b, into: $0) } }
        #expect(out == next)
        // Against the wrong base the result is wrong (the delta really depends on the base).
        var wrong = PageFactory.zero(size)
        try wrong.withUnsafeMutableBytes { try decoder.decode(batch.entries[0], of: batch, base: UnsafeRawBufferPointer($0), into: $0) }
        #expect(wrong != next)
    }

    @Test("corrupted LZ4 data is a clean malformed error")
    func corruptedCompressedData() throws {
        let size = Self.pageSize
        // An LZ4 block that decodes to 2 KiB instead of 4 KiB.
        let half = [UInt8](repeating: 0x33, count: size / 2)
        var compressed = [UInt8](repeating: 0, count: LZ4Block.bound(half.count))
        let length = half.withUnsafeBytes { s in compressed.withUnsafeMutableBytes { LZ4Block.compress(s, into: $0) } }
        compressed = Array(compressed.prefix(length))
        for encoding in [PageEncoding.lz4, .lz4Delta] {
            let frame = rawFrame(.pages) { w in
                w.write(UInt64(1)); w.write(UInt32(1))
                w.write(UInt64(0)); w.write(encoding.rawValue); w.write(UInt32(compressed.count)); w.write(bytes: compressed)
            }
            let batch = try PageBatch(frame: frame, pageSize: size, pageCount: 1)
            var out = PageFactory.zero(size)
            #expect(throws: ProtocolError.self) {
                try out.withUnsafeMutableBytes { try PageDecoder(pageSize: size).decode(batch.entries[0], of: batch, base: UnsafeRawBufferPointer($0), into: $0) }
            }
            do {
                try out.withUnsafeMutableBytes { try PageDecoder(pageSize: size).decode(batch.entries[0], of: batch, base: UnsafeRawBufferPointer($0), into: $0) }
            } catch let error as ProtocolError {
                #expect(error.kind == "malformed")
                #expect(error.description.contains("expected 4096"))
            }
        }
        // Garbage bytes as an LZ4 block.
        var rng = SplitMix64(seed: 3)
        for _ in 0..<200 {
            let garbage = rng.bytes(rng.int(in: 1...200))
            let frame = rawFrame(.pages) { w in
                w.write(UInt64(1)); w.write(UInt32(1))
                w.write(UInt64(0)); w.write(PageEncoding.lz4.rawValue); w.write(UInt32(garbage.count)); w.write(bytes: garbage)
            }
            let batch = try PageBatch(frame: frame, pageSize: size, pageCount: 1)
            var out = PageFactory.zero(size)
            do {
                try out.withUnsafeMutableBytes { try PageDecoder(pageSize: size).decode(batch.entries[0], of: batch, base: UnsafeRawBufferPointer($0), into: $0) }
            } catch let error as ProtocolError {
                #expect(error.kind == "malformed")
            }
        }
    }
}

@Suite("PageBatch parsing limits")
struct PageBatchTests {
    static func batch(epoch: UInt64 = 1, count: UInt32, _ entries: (inout WireWriter) -> Void) -> Frame {
        rawFrame(.pages) { w in
            w.write(epoch); w.write(count); entries(&w)
        }
    }

    static func parse(_ frame: Frame, pageSize: Int = 4096, pageCount: UInt64 = 16) -> Result<PageBatch, ProtocolError> {
        do throws(ProtocolError) { return .success(try PageBatch(frame: frame, pageSize: pageSize, pageCount: pageCount)) }
        catch { return .failure(error) }
    }

    static func error(_ frame: Frame, pageSize: Int = 4096, pageCount: UInt64 = 16) -> ProtocolError? {
        if case .failure(let e) = parse(frame, pageSize: pageSize, pageCount: pageCount) { e } else { nil }
    }

    @Test func entryCountLimits() throws {
        #expect(Self.error(Self.batch(count: 0) { _ in })?.kind == "malformed")
        #expect(Self.error(Self.batch(count: UInt32(PageBatch.maxEntries + 1)) { _ in })?.kind == "malformed")
        #expect(Self.error(Self.batch(count: UInt32.max) { _ in })?.kind == "malformed")
        // Announcing more entries than present is truncation.
        #expect(Self.error(Self.batch(count: 2) { w in w.write(UInt64(0)); w.write(UInt8(0)) })?.kind == "truncated")
        // Exactly maxEntries zero pages parse.
        let full = Self.batch(count: UInt32(PageBatch.maxEntries)) { w in
            for i in 0..<PageBatch.maxEntries { w.write(UInt64(i % 16)); w.write(PageEncoding.zero.rawValue) }
        }
        #expect(try Self.parse(full).get().entries.count == PageBatch.maxEntries)
    }

    @Test func indexAndEncodingChecks() throws {
        #expect(Self.error(Self.batch(count: 1) { w in w.write(UInt64(16)); w.write(UInt8(0)) })?.kind == "malformed")
        #expect(Self.error(Self.batch(count: 1) { w in w.write(UInt64.max); w.write(UInt8(0)) })?.kind == "malformed")
        let last = try Self.parse(Self.batch(count: 1) { w in w.write(UInt64(15)); w.write(UInt8(0)) }).get()
        #expect(last.entries == [PageBatch.Entry(index: 15, encoding: .zero, data: last.entries[0].data)])
        #expect(last.entries[0].data.isEmpty)
        for bad in UInt8(4)...UInt8(255) {
            let e = Self.error(Self.batch(count: 1) { w in w.write(UInt64(0)); w.write(bad) })
            #expect(e?.kind == "malformed" && e!.description.contains("unknown page encoding \(bad)"))
        }
    }

    @Test func compressedLengthBounds() throws {
        for encoding in [PageEncoding.lz4, .lz4Delta] {
            for length in [0, 4096, 4097, Int(UInt32.max)] {
                let frame = Self.batch(count: 1) { w in
                    w.write(UInt64(0)); w.write(encoding.rawValue); w.write(UInt32(length))
                    w.write(bytes: [UInt8](repeating: 1, count: min(length, 5000)))
                }
                #expect(Self.error(frame)?.kind == "malformed", "length \(length)")
            }
            let ok = try Self.parse(Self.batch(count: 1) { w in
                w.write(UInt64(0)); w.write(encoding.rawValue); w.write(UInt32(4095)); w.write(bytes: [UInt8](repeating: 1, count: 4095))
            }).get()
            #expect(ok.entries[0].data.count == 4095)
            #expect(ok.entries[0].data.lowerBound == Frame.headerSize + 12 + 13)
            // Declared length larger than the bytes present.
            let short = Self.batch(count: 1) { w in
                w.write(UInt64(0)); w.write(encoding.rawValue); w.write(UInt32(100)); w.write(bytes: [UInt8](repeating: 1, count: 99))
            }
            #expect(Self.error(short)?.kind == "truncated")
        }
    }

    @Test func rawAndTrailingBytes() {
        let rawShort = Self.batch(count: 1) { w in w.write(UInt64(0)); w.write(UInt8(1)); w.write(bytes: [UInt8](repeating: 7, count: 4095)) }
        #expect(Self.error(rawShort)?.kind == "truncated")
        let trailing = Self.batch(count: 1) { w in w.write(UInt64(0)); w.write(UInt8(0)); w.write(UInt8(0)) }
        #expect(Self.error(trailing)?.kind == "malformed")
        #expect(Self.error(trailing)!.description.contains("1 unexpected trailing bytes"))
        // Empty payload.
        #expect(Self.error(rawFrame(.pages) { _ in })?.kind == "truncated")
    }

    /// Run in a child process: an older PageBatch computed `pageCount - 1` for its error message
    /// and trapped here, which would take the whole test run down.
    @Test("a VM geometry with no pages rejects every entry instead of trapping")
    func zeroPageCountGeometry() async {
        await #expect(processExitsWith: .success) {
            let frame = Frame(.pages) { w in
                w.write(UInt64(1)); w.write(UInt32(1)); w.write(UInt64(0)); w.write(UInt8(0))
            }
            do throws(ProtocolError) {
                _ = try PageBatch(frame: frame, pageSize: 4096, pageCount: 0)
                fatalError("a page was accepted in a VM without pages")
            } catch {
                guard case .malformed = error else { fatalError("\(error)") }
            }
        }
    }
}
