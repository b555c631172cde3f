/// Which way a frame crosses the gate.
public enum FrameDirection: Sendable, Equatable {
    /// Guest → network: the frames output commit holds.
    case fromGuest
    /// Network → guest.
    case toGuest
}
