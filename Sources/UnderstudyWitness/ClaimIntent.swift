/// Why a node claims the witness key, which decides the terms it accepts.
public enum ClaimIntent: Sendable, Equatable {
    /// Carry on as the copy this node ran: allowed only while the term key still holds the term
    /// this node last held (none: it must be absent, the VM was never active anywhere). Any other
    /// term means another copy was active since, from a history this node does not have.
    case resume
    /// Become the active copy from a replica, or because the operator says the VM runs nowhere
    /// else: the next term, whatever the current one is.
    case takeOver
}
