#if canImport(Glibc)
import Glibc
#endif

/// Per-export flags telling the client what the export supports.
public struct NBDTransmissionFlags: OptionSet, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    /// Always set: the other bits mean something.
    public static let hasFlags = NBDTransmissionFlags(rawValue: 1 << 0)
    /// Every change is refused with EPERM.
    public static let readOnly = NBDTransmissionFlags(rawValue: 1 << 1)
    /// The client may send FLUSH, FUA, TRIM and WRITE_ZEROES.
    public static let sendFlush = NBDTransmissionFlags(rawValue: 1 << 2)
    public static let sendFUA = NBDTransmissionFlags(rawValue: 1 << 3)
    public static let sendTrim = NBDTransmissionFlags(rawValue: 1 << 5)
    public static let sendWriteZeroes = NBDTransmissionFlags(rawValue: 1 << 6)
}
