/// How one page travels inside a page batch.
public enum PageEncoding: UInt8, Sendable, CaseIterable {
    /// The page is all zeroes; no data follows.
    case zero = 0
    /// The page's bytes as they are (neither LZ4 form was smaller).
    case raw = 1
    /// LZ4 block of the page.
    case lz4 = 2
    /// LZ4 block of (page XOR the copy of that page the receiver already holds).
    case lz4Delta = 3
}

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

/// Builds one page-batch frame. The page codec appends entries; `finish` seals the count.
public struct PageBatchBuilder: Sendable {
    private var writer: WireWriter
    private let type: FrameType
    public private(set) var count = 0

    /// - Parameter type: `.pages` or `.syncPages`.
    public init(type: FrameType, epoch: UInt64, capacity: Int) {
        precondition(type == .pages || type == .syncPages)
        self.type = type
        writer = WireWriter(capacity: Frame.headerSize + capacity)
        writer.write(type.rawValue)
        writer.write(UInt32(0))
        writer.write(epoch)
        writer.write(UInt32(0))
    }

    /// Bytes the frame would have now.
    public var byteCount: Int { writer.bytes.count }

    mutating func appendHeader(index: UInt64, encoding: PageEncoding) {
        writer.write(index)
        writer.write(encoding.rawValue)
        count += 1
    }

    mutating func appendRaw(_ page: UnsafeRawBufferPointer) { writer.write(bytes: page) }

    /// Appends a u32 length and up to `capacity` bytes that `body` produces (returning the count).
    mutating func appendSized(capacity: Int, _ body: (UnsafeMutableRawBufferPointer) -> Int) {
        let lengthOffset = writer.bytes.count
        writer.write(UInt32(0))
        var produced = 0
        writer.append(reservingUpTo: capacity) { buffer in
            produced = body(buffer)
            return produced
        }
        writer.patch(UInt32(produced), at: lengthOffset)
    }

    public func finish() -> Frame {
        var writer = self.writer
        writer.patch(UInt32(writer.bytes.count - Frame.headerSize), at: 1)
        writer.patch(UInt32(count), at: Frame.headerSize + 8)
        // The header was written by this builder, so it is valid by construction.
        return try! Frame(validatedBytes: writer.bytes)
    }
}
