/// Frame types of protocol version 1. The numbering is part of the wire format (docs/PROTOCOL.md).
public enum FrameType: UInt8, Sendable, CaseIterable {
    case hello = 0x01
    case welcome = 0x02
    case reject = 0x03
    case syncBegin = 0x10
    case syncPages = 0x11
    case syncEnd = 0x12
    /// Only when both sides agreed the catch-up capability.
    case catchUpBegin = 0x13
    case checkpointBegin = 0x20
    case pages = 0x21
    case deviceState = 0x22
    case diskWrites = 0x23
    case checkpointEnd = 0x24
    case ack = 0x30
    case heartbeat = 0x40
    /// Only when both sides agreed the heartbeat-echo capability.
    case heartbeatEcho = 0x41
    case goodbye = 0x50
}

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

/// Splits a byte stream into frames. Used where bytes arrive in arbitrary pieces (tests, fuzzing);
/// the socket path reads headers and payloads directly.
public struct FrameStreamDecoder: Sendable {
    private var buffer: [UInt8] = []

    public init() {}

    public mutating func append<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        buffer.append(contentsOf: bytes)
    }

    /// The next whole frame, nil when more bytes are needed. A bad header throws at once,
    /// before its payload is awaited.
    public mutating func next() throws(ProtocolError) -> Frame? {
        guard buffer.count >= Frame.headerSize else { return nil }
        let (_, length) = try Frame.parseHeader(buffer[0..<Frame.headerSize])
        guard buffer.count >= Frame.headerSize + length else { return nil }
        let frame = try Frame(validatedBytes: Array(buffer[0..<(Frame.headerSize + length)]))
        buffer.removeFirst(Frame.headerSize + length)
        return frame
    }

    /// Bytes of an unfinished frame; non-zero at end of stream means the stream was truncated.
    public var pendingByteCount: Int { buffer.count }
}
