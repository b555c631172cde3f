#if canImport(Glibc)
import Glibc
#endif

/// Flags on a transmission request.
public struct NBDCommandFlags: OptionSet, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    /// Force unit access: the change must be durable before the reply.
    public static let fua = NBDCommandFlags(rawValue: 1 << 0)
    /// WRITE_ZEROES only: keep the range allocated, do not punch a hole.
    public static let noHole = NBDCommandFlags(rawValue: 1 << 1)
}
