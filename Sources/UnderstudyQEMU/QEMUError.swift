import Foundation

/// Failures of the QEMU driver, each with a sentence an operator can act on.
public enum QEMUError: Error, Sendable, Equatable, CustomStringConvertible {
    /// qemu-system-x86_64 (or another required file) is not there.
    case missing(String)
    /// QEMU exited; `log` is the tail of what it printed.
    case exited(status: Int32, log: String)
    /// A QMP command failed or QMP itself broke.
    case qmp(String)
    /// Dirty-page tracking could not be armed or read.
    case tracking(String)
    case io(String)
    case invalidConfiguration(String)

    public var description: String {
        switch self {
        case .missing(let what): what
        case .exited(let status, let log): "QEMU exited with status \(status)" + (log.isEmpty ? "" : ": \(log)")
        case .qmp(let what): "QMP: \(what)"
        case .tracking(let what): "dirty-page tracking: \(what)"
        case .io(let what): what
        case .invalidConfiguration(let what): "invalid VM configuration: \(what)"
        }
    }
}
