#if canImport(Glibc)
import Glibc
#endif

/// Reply types to options. Errors have bit 31 set.
enum NBDOptionReply {
    static let ack: UInt32 = 1
    static let server: UInt32 = 2
    static let info: UInt32 = 3
    static let errorUnsupported: UInt32 = 1 << 31 | 1
    static let errorInvalid: UInt32 = 1 << 31 | 3
    static let errorUnknown: UInt32 = 1 << 31 | 6
    static let errorTooBig: UInt32 = 1 << 31 | 9
}
