/// Optional protocol features, negotiated in the handshake.
public struct Capabilities: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let lz4Pages = Capabilities(rawValue: 1 << 0)
    public static let xorDelta = Capabilities(rawValue: 1 << 1)
    public static let deviceState = Capabilities(rawValue: 1 << 2)
    public static let diskWrites = Capabilities(rawValue: 1 << 3)
    /// Each side answers a HEARTBEAT with HEARTBEAT_ECHO, so its sender can measure the round trip.
    public static let heartbeatEcho = Capabilities(rawValue: 1 << 4)
    /// After a lost connection the primary may send CATCH_UP_BEGIN and one catch-up checkpoint
    /// on top of the backup's committed replica instead of a full synchronisation.
    public static let catchUp = Capabilities(rawValue: 1 << 5)
    /// The primary sends the backup a copy of every frame its gate gives the guest (GUEST_INPUT),
    /// so that a backup taking over gives the resumed guest what its checkpoint may lack.
    public static let inputReplay = Capabilities(rawValue: 1 << 6)
    /// DEVICE_STATE chunks carry the device state encoded (`DeviceStateCodec`): the smaller of
    /// LZ4(state) and LZ4(state XOR the previous checkpoint's state). Without it they carry the
    /// state whole and uncompressed.
    public static let deviceStateDelta = Capabilities(rawValue: 1 << 7)
    /// Content frames are checksummed with XXH3-128 instead of SHA-256 in the epoch digest
    /// (see `EpochDigest`).
    public static let xxh3Digest = Capabilities(rawValue: 1 << 8)

    /// Everything this build implements.
    public static let supported: Capabilities = [.lz4Pages, .xorDelta, .deviceState, .diskWrites, .heartbeatEcho, .catchUp, .inputReplay,
                                                 .deviceStateDelta, .xxh3Digest]

    public var description: String {
        let names: [(Capabilities, String)] = [
            (.lz4Pages, "lz4-pages"), (.xorDelta, "xor-delta"), (.deviceState, "device-state"), (.diskWrites, "disk-writes"),
            (.heartbeatEcho, "heartbeat-echo"), (.catchUp, "catch-up"), (.inputReplay, "input-replay"),
            (.deviceStateDelta, "device-state-delta"), (.xxh3Digest, "xxh3-digest"),
        ]
        var parts = names.filter { contains($0.0) }.map(\.1)
        let unknown = rawValue & ~Capabilities.supported.rawValue
        if unknown != 0 { parts.append("unknown(0x\(String(unknown, radix: 16)))") }
        return parts.isEmpty ? "none" : parts.joined(separator: ",")
    }
}
