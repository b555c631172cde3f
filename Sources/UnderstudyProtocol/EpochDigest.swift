import CUnderstudyShims

/// The checksum of a sync or checkpoint's content: SHA-256 over the checksum of each content
/// frame, in the order sent. Checksumming each frame separately lets the sender do it on the
/// threads that build the frames; the outer hash still catches a lost, repeated or reordered frame.
///
/// The frame checksum is XXH3-128 when both peers agreed on `xxh3Digest`, SHA-256 otherwise. TLS
/// already authenticates every byte on the wire, so this checksum guards against our own faults
/// (a frame lost or reordered between the socket and the staging area), not against an attacker:
/// a fast non-cryptographic hash is enough, and SHA-256 cost as much CPU per byte as TLS itself.
public struct EpochDigest: Sendable, Equatable {
    /// The size of the epoch digest (`value`).
    public static let size = 32
    public let frameChecksum: FrameChecksum
    private var frameDigests: [UInt8] = []

    /// How each content frame is checksummed.
    public enum FrameChecksum: Sendable, Equatable {
        case sha256
        case xxh3

        /// The frame checksum a session with `capabilities` agreed on uses.
        public init(agreed capabilities: Capabilities) {
            self = capabilities.contains(.xxh3Digest) ? .xxh3 : .sha256
        }

        public var size: Int {
            switch self {
            case .sha256: 32
            case .xxh3: 16
            }
        }

        public func callAsFunction(_ bytes: [UInt8]) -> [UInt8] {
            bytes.withUnsafeBytes { callAsFunction($0) }
        }

        public func callAsFunction(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
            switch self {
            case .sha256: EpochDigest.sha256(bytes)
            case .xxh3: EpochDigest.xxh3(bytes)
            }
        }
    }

    public init(frameChecksum: FrameChecksum) { self.frameChecksum = frameChecksum }

    public mutating func add(_ frame: Frame) { add(frameDigest: frameChecksum(frame.bytes)) }

    /// Adds a frame digest computed elsewhere with `frameChecksum(frame.bytes)`.
    public mutating func add(frameDigest: [UInt8]) {
        precondition(frameDigest.count == frameChecksum.size)
        frameDigests.append(contentsOf: frameDigest)
    }

    public var value: [UInt8] { EpochDigest.sha256(frameDigests) }

    /// SHA-256 through the system OpenSSL.
    public static func sha256(_ bytes: [UInt8]) -> [UInt8] { bytes.withUnsafeBytes { sha256($0) } }

    public static func sha256(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        out.withUnsafeMutableBytes { output in
            // EVP_Digest is one-shot; SHA-256 of any length cannot fail short of memory exhaustion.
            // An empty buffer may have a nil base address, which EVP_Digest accepts with length 0.
            let ok = EVP_Digest(bytes.baseAddress, bytes.count, output.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                nil, EVP_sha256(), nil)
            precondition(ok == 1, "EVP_Digest(SHA-256) failed")
        }
        return out
    }

    /// XXH3-128 through the system libxxhash, in its canonical (big-endian) form.
    public static func xxh3(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        // XXH3 reads exactly `count` bytes from the base address and accepts nil with length 0.
        var canonical = XXH128_canonical_t()
        XXH128_canonicalFromHash(&canonical, XXH3_128bits(bytes.baseAddress, bytes.count))
        return withUnsafeBytes(of: canonical.digest) { Array($0) }
    }
}
