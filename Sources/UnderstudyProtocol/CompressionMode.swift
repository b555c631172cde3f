import CUnderstudyShims

/// Which liblz4 compressor writes LZ4 blocks. Both produce the same block format, so the receiver
/// decodes either without being told: the choice is the sender's alone, trading CPU for bytes on
/// a thin link.
///
/// Text form (for configuration): `lz4`, `lz4hc` (level 9, liblz4's default), `lz4hc:N`.
public enum CompressionMode: Sendable, Equatable, LosslessStringConvertible {
    /// `LZ4_compress_default`: hundreds of MB/s per core.
    case fast
    /// `LZ4_compress_HC` at `level` (1...12): on text-like pages about 10% smaller than `fast`
    /// and about 8 times slower at level 9; 10 and up use the optimal parser, slower still.
    /// A level outside `highLevels` is clamped into it when compressing; parsing rejects it.
    case high(level: Int)

    /// The levels liblz4's HC compressor distinguishes (LZ4HC_CLEVEL_MAX is 12).
    public static let highLevels = 1...12
    /// liblz4's LZ4HC_CLEVEL_DEFAULT, what plain `lz4hc` means.
    public static let defaultHighLevel = 9

    /// Parses `lz4`, `lz4hc` or `lz4hc:N` with N in `highLevels`; nil for anything else.
    public init?(_ description: String) {
        switch description {
        case "lz4": self = .fast
        case "lz4hc": self = .high(level: CompressionMode.defaultHighLevel)
        default:
            guard description.hasPrefix("lz4hc:"), let level = Int(description.dropFirst("lz4hc:".count)),
                  CompressionMode.highLevels.contains(level) else { return nil }
            self = .high(level: level)
        }
    }

    /// `lz4`, or `lz4hc:N` with the level always spelled out, so that logs say what ran.
    public var description: String {
        switch self {
        case .fast: "lz4"
        case .high(let level): "lz4hc:\(level)"
        }
    }
}
