/// Why a session was refused (REJECT) or ended (GOODBYE).
public enum CloseCode: UInt16, Sendable, CustomStringConvertible {
    case normal = 0
    case versionMismatch = 1
    case identityMismatch = 2
    case capabilityMismatch = 3
    case busy = 4
    case protocolError = 5
    case internalError = 6
    /// A planned switchover: the primary took a final checkpoint with the guest paused, which
    /// the backup acknowledged; the backup now activates the VM from it.
    case switchover = 7

    public var description: String {
        switch self {
        case .normal: "normal"
        case .versionMismatch: "version mismatch"
        case .identityMismatch: "identity mismatch"
        case .capabilityMismatch: "capability mismatch"
        case .busy: "busy"
        case .protocolError: "protocol error"
        case .internalError: "internal error"
        case .switchover: "switchover"
        }
    }
}
