import CUnderstudyShims

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
