import CUnderstudyShims

/// Thin wrapper over liblz4's block API.
public enum LZ4Block {
    /// Worst-case compressed size of `size` input bytes.
    public static func bound(_ size: Int) -> Int { Int(LZ4_compressBound(Int32(size))) }

    /// Compresses `source` into `destination`; 0 when the result would not fit (liblz4 stops as
    /// soon as it knows, in both modes, which is what makes "try, but only if smaller" cheap).
    public static func compress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer,
                                mode: CompressionMode = .fast) -> Int {
        // Both pointers come from buffers valid for the whole call, and their counts bound what
        // liblz4 reads and writes.
        let input = source.baseAddress!.assumingMemoryBound(to: CChar.self)
        let output = destination.baseAddress!.assumingMemoryBound(to: CChar.self)
        switch mode {
        case .fast:
            return Int(LZ4_compress_default(input, output, Int32(source.count), Int32(destination.count)))
        case .high(let level):
            let clamped = min(max(level, CompressionMode.highLevels.lowerBound), CompressionMode.highLevels.upperBound)
            return Int(LZ4_compress_HC(input, output, Int32(source.count), Int32(destination.count), Int32(clamped)))
        }
    }

    /// Decompresses `source[range]` into exactly `destination.count` bytes; anything else is malformed input.
    public static func decompress(_ source: [UInt8], range: Range<Int>, into destination: UnsafeMutableRawBufferPointer,
                                  context: @autoclosure () -> String) throws(ProtocolError) {
        let produced = source.withUnsafeBytes { bytes in
            LZ4_decompress_safe(
                bytes.baseAddress!.advanced(by: range.lowerBound).assumingMemoryBound(to: CChar.self),
                destination.baseAddress!.assumingMemoryBound(to: CChar.self),
                Int32(range.count), Int32(destination.count))
        }
        guard produced == Int32(destination.count) else {
            throw .malformed("\(context()): LZ4 block decodes to \(produced) bytes, expected \(destination.count)")
        }
    }
}
