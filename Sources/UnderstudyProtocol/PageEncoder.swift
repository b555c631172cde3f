import CUnderstudyShims

/// Encodes pages for the wire. Zero pages become a flag; any other page becomes the smaller of
/// LZ4(page) and LZ4(page XOR the copy last sent), or the raw page when neither is smaller.
/// One shortcut: when the page does not compress and a sample of the XOR has almost no zero
/// bytes (the page was rewritten with new incompressible data: encrypted, compressed or random),
/// the XOR is not compressed either and the page goes raw. That second LZ4 pass would otherwise
/// double the encoding cost of exactly the pages that gain nothing from it.
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
        let samples = (pageSize - 8) / Self.sampleStride + 1
        let similar = Int(us_sampled_differences(page.baseAddress, lastSent.baseAddress, pageSize, Self.sampleStride)) * 4 <= samples
        var plain = 0
        var delta = 0
        if similar {
            delta = compressDelta(page, lastSent, capacity: pageSize - 1)
            plain = compressPlain(page, capacity: (delta > 0 ? delta : pageSize) - 1)
        } else {
            plain = compressPlain(page, capacity: pageSize - 1)
            if plain == 0, !Self.deltaMayCompress(page, lastSent) { return (.raw, pageSize) }
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

    /// Bytes between the 8-byte words sampled to compare a page with its last-sent copy.
    static let sampleStride = 128

    /// Whether LZ4 could shrink page XOR lastSent, judged from one 8-byte word of it every
    /// `sampleStride` bytes: an XOR of unrelated data has a zero byte one time in 256, while any
    /// overlap with the old content (an unchanged part, small changes to many words) shows as
    /// zero bytes. At least one sampled byte in eight must be zero.
    static func deltaMayCompress(_ page: UnsafeRawBufferPointer, _ lastSent: UnsafeRawBufferPointer) -> Bool {
        var zeroBytes = 0
        var sampledBytes = 0
        var offset = 0
        while offset + 8 <= page.count {
            let x = page.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
                ^ lastSent.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            // The high bit of each byte of `zero` is set exactly when that byte of x is zero
            // (no carries cross bytes: (b & 0x7F) + 0x7F stays below 0x100).
            let low: UInt64 = 0x7F7F_7F7F_7F7F_7F7F
            let zero = ~(((x & low) &+ low) | x | low)
            zeroBytes += zero.nonzeroBitCount
            sampledBytes += 8
            offset += sampleStride
        }
        return zeroBytes * 8 >= sampledBytes
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
