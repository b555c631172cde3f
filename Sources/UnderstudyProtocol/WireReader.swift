/// Reads big-endian integers and byte strings with bounds checks; every overrun is a `ProtocolError`.
public struct WireReader: Sendable {
    public let bytes: [UInt8]
    public private(set) var offset: Int
    private let context: String

    /// - Parameter context: names what is being read, for error messages ("HELLO", "page batch").
    public init(_ bytes: [UInt8], offset: Int = 0, context: String) {
        self.bytes = bytes
        self.offset = offset
        self.context = context
    }

    public var remaining: Int { bytes.count - offset }
    public var isAtEnd: Bool { offset == bytes.count }

    public mutating func readUInt8() throws(ProtocolError) -> UInt8 {
        try need(1)
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func readUInt16() throws(ProtocolError) -> UInt16 { try readInteger() }
    public mutating func readUInt32() throws(ProtocolError) -> UInt32 { try readInteger() }
    public mutating func readUInt64() throws(ProtocolError) -> UInt64 { try readInteger() }

    /// The range of the next `count` bytes in `bytes`, consumed.
    public mutating func readRange(_ count: Int) throws(ProtocolError) -> Range<Int> {
        try need(count)
        defer { offset += count }
        return offset..<(offset + count)
    }

    public mutating func readBytes(_ count: Int) throws(ProtocolError) -> [UInt8] {
        Array(bytes[try readRange(count)])
    }

    public mutating func readString() throws(ProtocolError) -> String {
        let count = Int(try readUInt16())
        let raw = try readBytes(count)
        guard let string = String(validating: raw, as: UTF8.self) else {
            throw .malformed("\(context): string is not valid UTF-8")
        }
        return string
    }

    /// Throws unless every byte was consumed: trailing garbage is an error, not ignored.
    public func expectEnd() throws(ProtocolError) {
        guard isAtEnd else {
            throw .malformed("\(context): \(remaining) unexpected trailing bytes")
        }
    }

    private func need(_ count: Int) throws(ProtocolError) {
        guard count >= 0, count <= remaining else {
            throw .truncated("\(context): needs \(count) more bytes at offset \(offset), has \(remaining)")
        }
    }

    private mutating func readInteger<T: FixedWidthInteger>() throws(ProtocolError) -> T {
        let size = MemoryLayout<T>.size
        try need(size)
        var value: T = 0
        for i in 0..<size { value = value << 8 | T(bytes[offset + i]) }
        offset += size
        return value
    }
}
