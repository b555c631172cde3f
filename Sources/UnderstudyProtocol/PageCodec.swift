import CUnderstudyShims

/// Which liblz4 compressor writes LZ4 blocks. Both produce the same block format, so the receiver
/// decodes either without being told: the choice is the sender's alone, trading CPU for bytes on
/// a thin link.
///
/// Text form (for configuration): `lz4`, `lz4hc` (level 9, liblz4's default), `lz4hc:N`.
public enum CompressionMode: Sendable, Equatable, LosslessStringConvertible {
    /// `LZ4_compress_default`: hundreds of MB/s per core.
    case fast
    /// `LZ4_compress_HC` at `level` (1...12): on text-like pages about 10% smaller than `fast`
    /// and about 8 times slower at level 9; 10 and up use the optimal parser, slower still.
    /// A level outside `highLevels` is clamped into it when compressing; parsing rejects it.
    case high(level: Int)

    /// The levels liblz4's HC compressor distinguishes (LZ4HC_CLEVEL_MAX is 12).
    public static let highLevels = 1...12
    /// liblz4's LZ4HC_CLEVEL_DEFAULT, what plain `lz4hc` means.
    public static let defaultHighLevel = 9

    /// Parses `lz4`, `lz4hc` or `lz4hc:N` with N in `highLevels`; nil for anything else.
    public init?(_ description: String) {
        switch description {
        case "lz4": self = .fast
        case "lz4hc": self = .high(level: CompressionMode.defaultHighLevel)
        default:
            guard description.hasPrefix("lz4hc:"), let level = Int(description.dropFirst("lz4hc:".count)),
                  CompressionMode.highLevels.contains(level) else { return nil }
            self = .high(level: level)
        }
    }

    /// `lz4`, or `lz4hc:N` with the level always spelled out, so that logs say what ran.
    public var description: String {
        switch self {
        case .fast: "lz4"
        case .high(let level): "lz4hc:\(level)"
        }
    }
}

/// Thin wrapper over liblz4's block API.
public enum LZ4Block {
    /// Worst-case compressed size of `size` input bytes.
    public static func bound(_ size: Int) -> Int { Int(LZ4_compressBound(Int32(size))) }

    /// Compresses `source` into `destination`; 0 when the result would not fit (liblz4 stops as
    /// soon as it knows, in both modes, which is what makes "try, but only if smaller" cheap).
    public static func compress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer,
                                mode: CompressionMode = .fast) -> Int {
        // Both pointers come from buffers valid for the whole call, and their counts bound what
        // liblz4 reads and writes.
        let input = source.baseAddress!.assumingMemoryBound(to: CChar.self)
        let output = destination.baseAddress!.assumingMemoryBound(to: CChar.self)
        switch mode {
        case .fast:
            return Int(LZ4_compress_default(input, output, Int32(source.count), Int32(destination.count)))
        case .high(let level):
            let clamped = min(max(level, CompressionMode.highLevels.lowerBound), CompressionMode.highLevels.upperBound)
            return Int(LZ4_compress_HC(input, output, Int32(source.count), Int32(destination.count), Int32(clamped)))
        }
    }

    /// Decompresses `source[range]` into exactly `destination.count` bytes; anything else is malformed input.
    public static func decompress(_ source: [UInt8], range: Range<Int>, into destination: UnsafeMutableRawBufferPointer,
                                  context: @autoclosure () -> String) throws(ProtocolError) {
        let produced = source.withUnsafeBytes { bytes in
            LZ4_decompress_safe(
                bytes.baseAddress!.advanced(by: range.lowerBound).assumingMemoryBound(to: CChar.self),
                destination.baseAddress!.assumingMemoryBound(to: CChar.self),
                Int32(range.count), Int32(destination.count))
        }
        guard produced == Int32(destination.count) else {
            throw .malformed("\(context()): LZ4 block decodes to \(produced) bytes, expected \(destination.count)")
        }
    }
}

/// Encodes pages for the wire. Zero pages become a flag; any other page becomes the smaller of
/// LZ4(page) and LZ4(page XOR the copy last sent), or the raw page when neither is smaller.
/// `compression` picks liblz4's compressor; the receiver decodes either.
///
/// One encoder per thread: it owns scratch buffers (hence `@unchecked Sendable`: it may move
/// between threads, never be shared by two at once). The caller owns the "last sent" copies and
/// must hand each page's copy to at most one encoder at a time.
public final class PageEncoder: @unchecked Sendable {
    public let pageSize: Int
    public let capabilities: Capabilities
    public let compression: CompressionMode
    private let delta: UnsafeMutableRawBufferPointer
    private let deltaOut: UnsafeMutableRawBufferPointer
    private let plainOut: UnsafeMutableRawBufferPointer

    public init(pageSize: Int, capabilities: Capabilities, compression: CompressionMode = .fast) {
        self.pageSize = pageSize
        self.capabilities = capabilities
        self.compression = compression
        delta = .allocate(byteCount: pageSize, alignment: 64)
        // Compressed output is only useful when smaller than the page, so pageSize - 1 bytes suffice.
        deltaOut = .allocate(byteCount: pageSize - 1, alignment: 16)
        plainOut = .allocate(byteCount: pageSize - 1, alignment: 16)
    }

    deinit {
        delta.deallocate()
        deltaOut.deallocate()
        plainOut.deallocate()
    }

    /// Worst-case bytes one page adds to a batch (index, encoding, length, data).
    public var maxEncodedSize: Int { 13 + pageSize }

    /// Appends `page` to `batch`, then makes `lastSent` equal to `page`. `page` must not change
    /// during the call (copy a running guest's page first), or `lastSent` would differ from what
    /// the receiver decodes.
    /// - Parameters:
    ///   - lastSent: the receiver's current copy of this page (all zero before it was ever sent).
    ///   - delta: false when the receiver's copy may differ from `lastSent` (a catch-up after a
    ///     lost connection): the page then goes whole, never as an XOR delta.
    @discardableResult
    public func append(page: UnsafeRawBufferPointer, index: UInt64, lastSent: UnsafeMutableRawBufferPointer, delta: Bool = true,
                       to batch: inout PageBatchBuilder) -> PageEncoding {
        precondition(page.count == pageSize && lastSent.count == pageSize)
        let (encoding, size) = choose(page: page, lastSent: UnsafeRawBufferPointer(lastSent), delta: delta)
        batch.appendHeader(index: index, encoding: encoding)
        switch encoding {
        case .zero: break
        case .raw: batch.appendRaw(page)
        case .lz4, .lz4Delta:
            let source = encoding == .lz4 ? plainOut : deltaOut
            batch.appendSized(capacity: size) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[0..<size])); return size }
        }
        lastSent.copyMemory(from: page)
        return encoding
    }

    /// Picks the encoding, leaving compressed bytes in `plainOut` or `deltaOut`.
    private func choose(page: UnsafeRawBufferPointer, lastSent: UnsafeRawBufferPointer, delta allowDelta: Bool) -> (PageEncoding, Int) {
        if us_is_zero(page.baseAddress, pageSize) != 0 { return (.zero, 0) }
        guard capabilities.contains(.lz4Pages) else { return (.raw, pageSize) }
        // When the receiver's copy is zero the delta is the page itself: compress once.
        guard allowDelta, capabilities.contains(.xorDelta), us_is_zero(lastSent.baseAddress, pageSize) == 0 else {
            let plain = compressPlain(page, capacity: pageSize - 1)
            return plain > 0 ? (.lz4, plain) : (.raw, pageSize)
        }
        // Both forms are candidates. Compress the likelier winner first; the other then only has
        // to beat it, and liblz4 stops as soon as its output reaches that size. The result is
        // the exact smaller of the two either way; the sample only decides the order.
        let similar = us_sampled_differences(page.baseAddress, lastSent.baseAddress, pageSize, 128) * 4 <= pageSize / 128
        var plain = 0
        var delta = 0
        if similar {
            delta = compressDelta(page, lastSent, capacity: pageSize - 1)
            plain = compressPlain(page, capacity: (delta > 0 ? delta : pageSize) - 1)
        } else {
            plain = compressPlain(page, capacity: pageSize - 1)
            delta = compressDelta(page, lastSent, capacity: (plain > 0 ? plain : pageSize) - 1)
        }
        // A second result, when there is one, is strictly smaller than the first.
        if similar {
            if plain > 0 { return (.lz4, plain) }
            return delta > 0 ? (.lz4Delta, delta) : (.raw, pageSize)
        }
        if delta > 0 { return (.lz4Delta, delta) }
        return plain > 0 ? (.lz4, plain) : (.raw, pageSize)
    }

    private func compressPlain(_ page: UnsafeRawBufferPointer, capacity: Int) -> Int {
        capacity > 0 ? LZ4Block.compress(page, into: UnsafeMutableRawBufferPointer(rebasing: plainOut[0..<capacity]), mode: compression) : 0
    }

    private func compressDelta(_ page: UnsafeRawBufferPointer, _ lastSent: UnsafeRawBufferPointer, capacity: Int) -> Int {
        guard capacity > 0 else { return 0 }
        us_xor(delta.baseAddress, page.baseAddress, lastSent.baseAddress, pageSize)
        return LZ4Block.compress(UnsafeRawBufferPointer(delta), into: UnsafeMutableRawBufferPointer(rebasing: deltaOut[0..<capacity]),
                                 mode: compression)
    }
}

/// Decodes page-batch entries. One decoder per thread at a time: it owns a scratch page.
public final class PageDecoder: @unchecked Sendable {
    public let pageSize: Int
    private let scratch: UnsafeMutableRawBufferPointer

    public init(pageSize: Int) {
        self.pageSize = pageSize
        scratch = .allocate(byteCount: pageSize, alignment: 64)
    }

    deinit { scratch.deallocate() }

    /// Writes the page that `entry` describes into `destination`.
    /// - Parameter base: the receiver's current copy of the page (the XOR base); may be `destination` itself.
    public func decode(_ entry: PageBatch.Entry, of batch: PageBatch, base: UnsafeRawBufferPointer,
                       into destination: UnsafeMutableRawBufferPointer) throws(ProtocolError) {
        precondition(destination.count == pageSize && base.count == pageSize)
        switch entry.encoding {
        case .zero:
            destination.initializeMemory(as: UInt8.self, repeating: 0)
        case .raw:
            batch.frame.bytes.withUnsafeBytes { destination.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[entry.data])) }
        case .lz4:
            try LZ4Block.decompress(batch.frame.bytes, range: entry.data, into: destination, context: "page \(entry.index)")
        case .lz4Delta:
            try LZ4Block.decompress(batch.frame.bytes, range: entry.data, into: scratch, context: "page \(entry.index)")
            us_xor(destination.baseAddress, base.baseAddress, scratch.baseAddress, pageSize)
        }
    }
}
