/// The part a node plays in the pair.
public enum NodeRole: String, Sendable, CaseIterable {
    /// Runs the VM and protects it.
    case primary
    /// Keeps the replica and takes over when the primary is lost.
    case backup
}
