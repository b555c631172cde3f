#if canImport(Glibc)
import Glibc
#endif

/// Flags the client answers the greeting with; any other bit is a protocol violation.
struct NBDClientFlags: OptionSet, Sendable {
    let rawValue: UInt32
    static let fixedNewstyle = NBDClientFlags(rawValue: 1 << 0)
    static let noZeroes = NBDClientFlags(rawValue: 1 << 1)
}
