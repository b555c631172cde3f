import UnderstudyQEMU
import UnixSignals

/// Why the agent stops. Whether the operator asked for it decides the exit status: a requested
/// stop is a success, anything else a failure.
public enum StopReason: Sendable, Equatable, CustomStringConvertible {
    /// The operator asked for it: `signal` reached a command that traps it itself, or (nil) a
    /// graceful shutdown of the daemon's service group, which SIGTERM and SIGINT start.
    case requested(UnixSignal?)
    /// The VM's QEMU exited while it should have run.
    case qemuExited(QEMUError)
    /// A spare host's claim replaced this backup (`[fleet]`): it stands down (`NodeDaemon`).
    case replaced(SpareClaim)

    /// The operator asked for the stop.
    public var isRequested: Bool {
        if case .requested = self { true } else { false }
    }

    public var description: String {
        switch self {
        case .requested(UnixSignal.sigint?): "interrupted"
        case .requested(UnixSignal.sigterm?), .requested(nil): "terminated"
        case .requested(let signal?): "stopped by \(signal)"
        case .qemuExited(let error): "\(error)"
        case .replaced(let claim): "standing down: \(claim.node) on \(claim.host) protects the VM in place of \(claim.lostBackup)"
        }
    }
}
