
/// One frame as it travels: a 5-byte header (type u8, payload length u32 big-endian) and the payload.
/// The header is kept in `bytes` so that a frame is sent and hashed without another copy.
public struct Frame: Sendable, Equatable {
    public static let headerSize = 5
    /// The hard limit on a payload. Larger frames end the session before any byte of them is buffered.
    public static let maxPayload = 4 << 20

    public let type: FrameType
    /// Header followed by payload.
    public let bytes: [UInt8]

    public var payloadCount: Int { bytes.count - Frame.headerSize }

    /// Builds a frame whose payload `body` writes.
    public init(_ type: FrameType, capacity: Int = 64, _ body: (inout WireWriter) -> Void) {
        var writer = WireWriter(capacity: Frame.headerSize + capacity)
        writer.write(type.rawValue)
        writer.write(UInt32(0))
        body(&writer)
        let length = writer.bytes.count - Frame.headerSize
        precondition(length <= Frame.maxPayload, "encoder built a \(length)-byte \(type) frame")
        writer.patch(UInt32(length), at: 1)
        self.type = type
        self.bytes = writer.bytes
    }

    /// Wraps bytes read from the wire (header and payload), checking the header against the length.
    public init(validatedBytes bytes: [UInt8]) throws(ProtocolError) {
        let (type, length) = try Frame.parseHeader(bytes.prefix(Frame.headerSize))
        guard bytes.count == Frame.headerSize + length else {
            throw .truncated("\(type) frame announces \(length) payload bytes, has \(bytes.count - Frame.headerSize)")
        }
        self.type = type
        self.bytes = bytes
    }

    /// Validates a header: a known type and a length within the limit.
    public static func parseHeader<C: Collection>(_ header: C) throws(ProtocolError) -> (FrameType, Int)
    where C.Element == UInt8 {
        guard header.count == headerSize else { throw .truncated("frame header has \(header.count) of 5 bytes") }
        var iterator = header.makeIterator()
        let raw = iterator.next()!
        var length = 0
        for _ in 0..<4 { length = length << 8 | Int(iterator.next()!) }
        guard let type = FrameType(rawValue: raw) else { throw .unknownFrameType(raw) }
        guard length <= maxPayload else { throw .oversized(type: raw, length: length, limit: maxPayload) }
        return (type, length)
    }

    /// A reader over the payload.
    public func reader() -> WireReader {
        WireReader(bytes, offset: Frame.headerSize, context: "\(type)")
    }
}
