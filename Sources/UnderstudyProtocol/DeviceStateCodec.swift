import CUnderstudyShims

/// The device state as a checkpoint's DEVICE_STATE chunks carry it once both sides agreed the
/// `device-state-delta` capability: `encoding u8 | state length u32 | body`, with the page
/// codec's encodings and rules. QEMU's device state barely changes between checkpoints (a few
/// dozen bytes of 15 KB on the test guest), so its XOR with the previous checkpoint's state
/// compresses to a few hundred bytes, where the whole state costs kilobytes even compressed.
///
/// - raw: the body is the state itself;
/// - lz4: the body is an LZ4 block of the state, shorter than the state;
/// - lz4Delta: the body is an LZ4 block of (state XOR the previous checkpoint's state), shorter
///   than the state; only when the previous state has the same length.
///
/// Both sides hold the previous state: the sender the one it encoded last in this session, the
/// receiver the one it committed last. The first checkpoint of a session is never a delta.
public enum DeviceStateCodec {
    /// Encoding byte and length.
    public static let headerSize = 5

    /// Encodes `state` as the smaller of LZ4(state) and LZ4(state XOR previous), or raw when
    /// neither is smaller than the state.
    /// - Parameter previous: the state the receiver holds from the previous checkpoint of this
    ///   session; nil when it may hold another (first checkpoint of a session, after a catch-up or
    ///   a full sync). A previous state of another length (hot-plug, vCPU change) is no base either.
    public static func encode(_ state: [UInt8], previous: [UInt8]?, compression: CompressionMode = .fast) -> [UInt8] {
        precondition(state.count <= Int(UInt32.max), "a device state of \(state.count) bytes")
        var encoded = [UInt8](repeating: 0, count: headerSize + state.count)
        let (encoding, size) = state.withUnsafeBytes { source in
            encoded.withUnsafeMutableBytes { output in
                choose(source, previous: previous, into: UnsafeMutableRawBufferPointer(rebasing: output[headerSize...]),
                       compression: compression)
            }
        }
        encoded[0] = encoding.rawValue
        withUnsafeBytes(of: UInt32(state.count).bigEndian) { for (i, byte) in $0.enumerated() { encoded[1 + i] = byte } }
        encoded.removeLast(state.count - size)
        return encoded
    }

    /// Writes the chosen form into `body` (room for the whole state) and returns it with its size.
    private static func choose(_ state: UnsafeRawBufferPointer, previous: [UInt8]?, into body: UnsafeMutableRawBufferPointer,
                               compression: CompressionMode) -> (PageEncoding, Int) {
        // liblz4 needs a buffer to read; a compressed form of fewer than two bytes cannot exist.
        guard state.count >= 2 else {
            body.copyMemory(from: state)
            return (.raw, state.count)
        }
        var delta = 0
        if let previous, previous.count == state.count {
            // The delta is almost always the winner: compress it first, then the whole state only
            // has to beat it (liblz4 gives up as soon as its output reaches the capacity).
            var difference = [UInt8](repeating: 0, count: state.count)
            difference.withUnsafeMutableBytes { x in
                previous.withUnsafeBytes { p in xor(x, state, p) }
                delta = LZ4Block.compress(UnsafeRawBufferPointer(x), into: UnsafeMutableRawBufferPointer(rebasing: body[0..<(state.count - 1)]),
                                          mode: compression)
            }
        }
        let capacity = (delta > 0 ? delta : state.count) - 1
        if capacity > 0 {
            var plain = [UInt8](repeating: 0, count: capacity)
            let size = plain.withUnsafeMutableBytes { LZ4Block.compress(state, into: $0, mode: compression) }
            if size > 0 {
                plain.withUnsafeBytes { body.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<size])) }
                return (.lz4, size)
            }
        }
        if delta > 0 { return (.lz4Delta, delta) }
        body.copyMemory(from: state)
        return (.raw, state.count)
    }

    /// destination = a XOR b, all of one length. `us_xor` works in whole words (pages are); a
    /// device state's length is anything, so the tail is done here.
    private static func xor(_ destination: UnsafeMutableRawBufferPointer, _ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) {
        let count = destination.count
        us_xor(destination.baseAddress, a.baseAddress, b.baseAddress, count)
        for i in (count & ~7)..<count { destination[i] = a[i] ^ b[i] }
    }

    /// Decodes an encoded device state.
    /// - Parameters:
    ///   - previous: the state of the receiver's last committed checkpoint (empty when it has none).
    ///   - maxLength: the longest state the receiver accepts.
    public static func decode(_ encoded: [UInt8], previous: [UInt8], maxLength: Int) throws(ProtocolError) -> [UInt8] {
        var reader = WireReader(encoded, context: "device state")
        let raw = try reader.readUInt8()
        let length = Int(try reader.readUInt32())
        guard let encoding = PageEncoding(rawValue: raw), encoding != .zero else {
            throw .malformed("device state in unknown encoding \(raw)")
        }
        guard length <= maxLength else { throw .malformed("a device state of \(length) bytes, more than \(maxLength)") }
        let body = headerSize..<encoded.count
        if encoding == .raw {
            guard body.count == length else { throw .malformed("raw device state of \(length) bytes carries \(body.count)") }
            return Array(encoded[body])
        }
        guard body.count > 0, body.count < length else {
            throw .malformed("compressed device state of \(body.count) bytes for a state of \(length) (must be shorter)")
        }
        if encoding == .lz4Delta, previous.count != length {
            throw .malformed("device-state delta for a state of \(length) bytes, but the previous state has \(previous.count)")
        }
        var state = [UInt8](repeating: 0, count: length)
        let failure: ProtocolError? = state.withUnsafeMutableBytes { destination in
            do throws(ProtocolError) {
                try LZ4Block.decompress(encoded, range: body, into: destination, context: "device state")
            } catch {
                return error
            }
            if encoding == .lz4Delta {
                previous.withUnsafeBytes { xor(destination, UnsafeRawBufferPointer(destination), $0) }
            }
            return nil
        }
        if let failure { throw failure }
        return state
    }
}
