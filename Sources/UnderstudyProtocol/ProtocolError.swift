/// Everything that can be wrong with what a peer sent. Each case carries a sentence that says
/// what was wrong, so that the session can end with an error an operator can act on.
public enum ProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The stream or a frame ended before a field it announced.
    case truncated(String)
    /// A field has an impossible value (bad kind, index out of range, bad UTF-8, trailing bytes).
    case malformed(String)
    /// A frame announced a payload larger than the hard limit.
    case oversized(type: UInt8, length: Int, limit: Int)
    /// The frame type byte is not one this protocol version defines.
    case unknownFrameType(UInt8)
    /// A frame that is valid on its own arrived when the session did not expect it
    /// (out of order, duplicate, wrong epoch).
    case unexpected(String)
    /// The peer's first bytes are not an Understudy HELLO.
    case notUnderstudy
    /// The peer speaks another protocol version.
    case versionMismatch(local: UInt16, remote: UInt16)
    /// The peer protects a different VM (id, memory size or page size differ).
    case identityMismatch(String)
    /// The peer lacks a capability this side requires.
    case capabilityMismatch(String)
    /// A checkpoint or sync arrived whole but its counts or checksum do not match its content.
    case verificationFailed(String)
    /// The peer refused the session and said why.
    case rejected(code: CloseCode, message: String)

    public var description: String {
        switch self {
        case .truncated(let what): "truncated input: \(what)"
        case .malformed(let what): "malformed input: \(what)"
        case .oversized(let type, let length, let limit):
            "frame type 0x\(String(type, radix: 16)) announces \(length) bytes, over the \(limit)-byte limit"
        case .unknownFrameType(let type): "unknown frame type 0x\(String(type, radix: 16))"
        case .unexpected(let what): "unexpected frame: \(what)"
        case .notUnderstudy: "peer does not speak the Understudy replication protocol (bad magic in HELLO)"
        case .versionMismatch(let local, let remote):
            "protocol version mismatch: this node speaks version \(local), the peer speaks version \(remote)"
        case .identityMismatch(let what): "VM identity mismatch: \(what)"
        case .capabilityMismatch(let what): "capability mismatch: \(what)"
        case .verificationFailed(let what): "verification failed: \(what)"
        case .rejected(let code, let message): "peer rejected the session (\(code)): \(message)"
        }
    }

    /// The code a REJECT or GOODBYE sent because of this error carries.
    public var rejectCode: CloseCode {
        switch self {
        case .versionMismatch: .versionMismatch
        case .identityMismatch: .identityMismatch
        case .capabilityMismatch: .capabilityMismatch
        case .rejected(let code, _): code
        default: .protocolError
        }
    }
}
