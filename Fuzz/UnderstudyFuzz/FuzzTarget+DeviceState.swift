import UnderstudyProtocol

extension FuzzTarget {
    /// A checkpoint's encoded device state (device-state-delta) decoded against the backup's
    /// committed state. Input: the committed state's length u16 (big-endian), that many bytes, then
    /// the encoded state. A state that decodes is as long as it says, and encodes back to itself.
    static let deviceState = FuzzTarget(name: "device-state", run: { bytes in
        guard bytes.count >= 2 else { return }
        let previousLength = min(Int(bytes[0]) << 8 | Int(bytes[1]), bytes.count - 2)
        let previous = Array(bytes[2..<(2 + previousLength)])
        let encoded = Array(bytes[(2 + previousLength)...])
        guard let state = try? DeviceStateCodec.decode(encoded, previous: previous, maxLength: 1 << 20) else { return }
        let declared = encoded.count >= DeviceStateCodec.headerSize
            ? Int(encoded[1]) << 24 | Int(encoded[2]) << 16 | Int(encoded[3]) << 8 | Int(encoded[4]) : -1
        precondition(state.count == declared, "decoded \(state.count) bytes of a state that declares \(declared)")
        let again = DeviceStateCodec.encode(state, previous: previous)
        precondition((try? DeviceStateCodec.decode(again, previous: previous, maxLength: 1 << 20)) == state, "re-encoding changed the state")
    }, seeds: {
        ProtocolSamples.deviceStates.map { previous, state in
            [UInt8(previous.count >> 8), UInt8(previous.count & 0xFF)] + previous + DeviceStateCodec.encode(state, previous: previous)
        }
    })
}
