import UnderstudyProtocol

/// Decodes every entry of a page batch into one page-sized buffer, as the backup's staging does.
final class PageDecoding {
    private let decoder = PageDecoder(pageSize: Int(ProtocolSamples.identity.pageSize))
    private let page = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(ProtocolSamples.identity.pageSize), alignment: 64)

    init() { page.initializeMemory(as: UInt8.self, repeating: 0) }

    deinit { page.deallocate() }

    func decodeAll(_ batch: PageBatch) {
        for entry in batch.entries {
            try? decoder.decode(entry, of: batch, base: UnsafeRawBufferPointer(page), into: page)
        }
    }
}
