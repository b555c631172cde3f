#if canImport(Glibc)
import Glibc
#endif

extension [UInt8] {
    /// The big-endian integer at `offset`; the caller has checked that it lies inside.
    func bigEndianInteger<T: FixedWidthInteger>(at offset: Int, as type: T.Type = T.self) -> T {
        var value: T = 0
        for index in offset..<(offset + MemoryLayout<T>.size) { value = value << 8 | T(self[index]) }
        return value
    }
}
