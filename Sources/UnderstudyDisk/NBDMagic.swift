#if canImport(Glibc)
import Glibc
#endif

/// Numbers of the NBD protocol (the NBD project's doc/proto.md), as far as this server speaks
/// it: fixed-newstyle handshake, simple replies only. Everything on the wire is big-endian.
enum NBDMagic {
    /// "NBDMAGIC": the first 8 bytes the server sends.
    static let greeting: UInt64 = 0x4E42_444D_4147_4943
    /// "IHAVEOPT": follows the greeting, and starts every option the client sends.
    static let option: UInt64 = 0x4948_4156_454F_5054
    /// Starts every reply to an option.
    static let optionReply: UInt64 = 0x3_E889_0455_65A9
    /// Starts every transmission request.
    static let request: UInt32 = 0x2560_9513
    /// Starts every simple reply.
    static let simpleReply: UInt32 = 0x6744_6698
}
