
/// A frame of pages (PAGES in a checkpoint, SYNC_PAGES during initial synchronisation), parsed and
/// bounds-checked but not decompressed. Entries point into the frame's bytes.
///
/// Payload: epoch u64, count u32, then per page: index u64, encoding u8, and for `raw` the page's
/// bytes, for `lz4`/`lz4Delta` a u32 length and that many bytes.
public struct PageBatch: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var index: UInt64
        public var encoding: PageEncoding
        /// Where the encoded bytes lie in `frame.bytes` (empty for `zero`).
        public var data: Range<Int>
    }

    /// The most pages one batch may carry.
    public static let maxEntries = 16384
    /// Payload bytes before the first entry: epoch and count.
    public static let headerSize = 12

    public let epoch: UInt64
    public let frame: Frame
    public let entries: [Entry]

    /// Parses and checks a PAGES or SYNC_PAGES frame against the VM's page geometry.
    public init(frame: Frame, pageSize: Int, pageCount: UInt64) throws(ProtocolError) {
        var reader = frame.reader()
        epoch = try reader.readUInt64()
        let count = Int(try reader.readUInt32())
        guard count > 0, count <= PageBatch.maxEntries else {
            throw .malformed("page batch announces \(count) pages (1...\(PageBatch.maxEntries) allowed)")
        }
        // A compressed form is only ever sent when it is smaller than the page.
        let maxCompressed = pageSize - 1
        var entries: [Entry] = []
        entries.reserveCapacity(count)
        for position in 0..<count {
            let index = try reader.readUInt64()
            guard index < pageCount else {
                throw .malformed("page batch entry \(position): page index \(index) is outside the VM's \(pageCount) pages")
            }
            let rawEncoding = try reader.readUInt8()
            guard let encoding = PageEncoding(rawValue: rawEncoding) else {
                throw .malformed("page batch entry \(position): unknown page encoding \(rawEncoding)")
            }
            let data: Range<Int>
            switch encoding {
            case .zero:
                data = reader.offset..<reader.offset
            case .raw:
                data = try reader.readRange(pageSize)
            case .lz4, .lz4Delta:
                let length = Int(try reader.readUInt32())
                guard length > 0, length <= maxCompressed else {
                    throw .malformed("page batch entry \(position): compressed length \(length) outside 1...\(maxCompressed)")
                }
                data = try reader.readRange(length)
            }
            entries.append(Entry(index: index, encoding: encoding, data: data))
        }
        try reader.expectEnd()
        self.frame = frame
        self.entries = entries
    }
}
