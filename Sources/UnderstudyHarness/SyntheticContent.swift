/// What a synthetic guest writes into the pages it dirties.
public enum SyntheticContent: String, Sendable, CaseIterable, Codable {
    /// Text-like bytes: words from a small vocabulary (compresses about 3-4x).
    case text
    /// Random bytes (incompressible).
    case random
    /// A few bytes changed in a page that already holds data (the XOR-delta case).
    case sparseUpdate
    /// All zeroes.
    case zero
    /// Slices of real program binaries from the host.
    case binary
}
