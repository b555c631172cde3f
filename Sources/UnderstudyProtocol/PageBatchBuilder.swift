/// Builds one page-batch frame. The page codec appends entries; `finish` seals the count.
public struct PageBatchBuilder: Sendable {
    private(set) var writer: WireWriter
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

    /// Seals the count and hands the bytes over to the frame; the builder is empty afterwards.
    /// (Patching a copy would copy the whole batch, since the builder still shares the buffer:
    /// a megabyte and its page faults per frame.)
    public mutating func finish() -> Frame {
        writer.patch(UInt32(writer.bytes.count - Frame.headerSize), at: 1)
        writer.patch(UInt32(count), at: Frame.headerSize + 8)
        count = 0
        // The header was written by this builder, so it is valid by construction.
        return try! Frame(validatedBytes: writer.takeBytes())
    }
}
