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
