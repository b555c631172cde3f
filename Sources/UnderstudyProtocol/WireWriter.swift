/// Appends big-endian integers and byte strings to a growing buffer.
public struct WireWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func write(_ value: UInt8) { bytes.append(value) }
    public mutating func write(_ value: UInt16) { writeInteger(value) }
    public mutating func write(_ value: UInt32) { writeInteger(value) }
    public mutating func write(_ value: UInt64) { writeInteger(value) }

    public mutating func write<C: Collection>(bytes other: C) where C.Element == UInt8 {
        bytes.append(contentsOf: other)
    }

    public mutating func write(bytes other: UnsafeRawBufferPointer) {
        bytes.append(contentsOf: other)
    }

    /// A length-prefixed (u16) UTF-8 string, cut to 65,535 bytes at a character boundary.
    public mutating func write(string: String) {
        var utf8 = Array(string.utf8)
        if utf8.count > Int(UInt16.max) {
            var end = Int(UInt16.max)
            // Step back over continuation bytes (10xxxxxx) so no character is split.
            while end > 0 && utf8[end] & 0xC0 == 0x80 { end -= 1 }
            utf8.removeSubrange(end...)
        }
        write(UInt16(utf8.count))
        bytes.append(contentsOf: utf8)
    }

    /// Grows the buffer by `count` bytes and lets `body` fill them; `body` returns how many it used.
    public mutating func append(reservingUpTo count: Int, _ body: (UnsafeMutableRawBufferPointer) -> Int) {
        let start = bytes.count
        bytes.append(contentsOf: repeatElement(0, count: count))
        let used = bytes.withUnsafeMutableBytes { all in
            body(UnsafeMutableRawBufferPointer(rebasing: all[start..<(start + count)]))
        }
        precondition(used >= 0 && used <= count, "append body reported \(used) of \(count) bytes")
        bytes.removeLast(count - used)
    }

    /// Hands the bytes written so far over to the caller without copying them, leaving the writer empty.
    public mutating func takeBytes() -> [UInt8] {
        var taken: [UInt8] = []
        swap(&taken, &bytes)
        return taken
    }

    /// Overwrites a previously written big-endian u32 at `offset` (for counts known only at the end).
    public mutating func patch(_ value: UInt32, at offset: Int) {
        for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (24 - 8 * UInt32(i))) }
    }

    private mutating func writeInteger<T: FixedWidthInteger>(_ value: T) {
        var big = value.bigEndian
        withUnsafeBytes(of: &big) { bytes.append(contentsOf: $0) }
    }
}
