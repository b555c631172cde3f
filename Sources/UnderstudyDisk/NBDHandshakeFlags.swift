#if canImport(Glibc)
import Glibc
#endif

/// Handshake flags the server announces after the greeting.
struct NBDHandshakeFlags: OptionSet, Sendable {
    let rawValue: UInt16
    static let fixedNewstyle = NBDHandshakeFlags(rawValue: 1 << 0)
    /// The client may ask to skip the 124 zero bytes after NBD_OPT_EXPORT_NAME's reply.
    static let noZeroes = NBDHandshakeFlags(rawValue: 1 << 1)
}
