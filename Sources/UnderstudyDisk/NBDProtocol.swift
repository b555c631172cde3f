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

/// Handshake flags the server announces after the greeting.
struct NBDHandshakeFlags: OptionSet, Sendable {
    let rawValue: UInt16
    static let fixedNewstyle = NBDHandshakeFlags(rawValue: 1 << 0)
    /// The client may ask to skip the 124 zero bytes after NBD_OPT_EXPORT_NAME's reply.
    static let noZeroes = NBDHandshakeFlags(rawValue: 1 << 1)
}

/// Flags the client answers the greeting with; any other bit is a protocol violation.
struct NBDClientFlags: OptionSet, Sendable {
    let rawValue: UInt32
    static let fixedNewstyle = NBDClientFlags(rawValue: 1 << 0)
    static let noZeroes = NBDClientFlags(rawValue: 1 << 1)
}

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

/// Option codes of the handshake this server acts on; every other one is answered "unsupported".
enum NBDOption {
    static let exportName: UInt32 = 1
    static let abort: UInt32 = 2
    static let list: UInt32 = 3
    static let info: UInt32 = 6
    static let go: UInt32 = 7
}

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

/// Information items in the replies to NBD_OPT_INFO and NBD_OPT_GO.
enum NBDInfo {
    static let export: UInt16 = 0
    static let blockSize: UInt16 = 3
}

/// The commands of the transmission phase this server executes. Others (CACHE, BLOCK_STATUS)
/// are never advertised and are answered EINVAL like any unknown command.
public enum NBDCommand: UInt16, Sendable {
    case read = 0
    /// The data follows the request header.
    case write = 1
    /// The client ends the session; no reply.
    case disconnect = 2
    /// Make every change answered so far durable.
    case flush = 3
    /// Discard a range; this server punches a hole, so it reads as zeroes afterwards.
    case trim = 4
    /// Make a range read as zeroes, without data on the wire.
    case writeZeroes = 6
}

/// Flags on a transmission request.
public struct NBDCommandFlags: OptionSet, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    /// Force unit access: the change must be durable before the reply.
    public static let fua = NBDCommandFlags(rawValue: 1 << 0)
    /// WRITE_ZEROES only: keep the range allocated, do not punch a hole.
    public static let noHole = NBDCommandFlags(rawValue: 1 << 1)
}

/// The error codes a reply can carry. The protocol fixes these values; they happen to match
/// Linux errno.
public enum NBDError: UInt32, Sendable {
    /// EPERM: a change to a read-only export.
    case notPermitted = 1
    /// EIO: the image could not be read or changed.
    case ioError = 5
    /// EINVAL: an unknown command or flag, or a range outside the export or too long.
    case invalidArgument = 22
    /// ENOSPC: a write past the end of the export, or a full host file system.
    case noSpace = 28

    /// The protocol's code for a failed system call: the spec asks for ENOSPC on EDQUOT and EFBIG
    /// too, and anything without its own code is an I/O error.
    public init(errno code: Int32) {
        switch code {
        case EPERM, EACCES, EROFS: self = .notPermitted
        case EINVAL: self = .invalidArgument
        case ENOSPC, EDQUOT, EFBIG: self = .noSpace
        default: self = .ioError
        }
    }
}

extension [UInt8] {
    /// The big-endian integer at `offset`; the caller has checked that it lies inside.
    func bigEndianInteger<T: FixedWidthInteger>(at offset: Int, as type: T.Type = T.self) -> T {
        var value: T = 0
        for index in offset..<(offset + MemoryLayout<T>.size) { value = value << 8 | T(self[index]) }
        return value
    }
}
