import CUnderstudyShims

/// The checksum of a sync or checkpoint's content: SHA-256 over the SHA-256 of each content frame,
/// in the order sent. Hashing each frame separately lets the sender hash frames on the threads
/// that build them; the outer hash still catches a lost, repeated or reordered frame.
public struct EpochDigest: Sendable, Equatable {
    public static let size = 32
    private var frameDigests: [UInt8] = []

    public init() {}

    public mutating func add(_ frame: Frame) { add(frameDigest: EpochDigest.sha256(frame.bytes)) }

    /// Adds a frame digest computed elsewhere with `sha256(frame.bytes)`.
    public mutating func add(frameDigest: [UInt8]) {
        precondition(frameDigest.count == EpochDigest.size)
        frameDigests.append(contentsOf: frameDigest)
    }

    public var value: [UInt8] { EpochDigest.sha256(frameDigests) }

    /// SHA-256 through the system OpenSSL.
    public static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: size)
        bytes.withUnsafeBytes { input in
            out.withUnsafeMutableBytes { output in
                // EVP_Digest is one-shot; SHA-256 of any length cannot fail short of memory exhaustion.
                let ok = EVP_Digest(input.baseAddress, input.count, output.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                    nil, EVP_sha256(), nil)
                precondition(ok == 1, "EVP_Digest(SHA-256) failed")
            }
        }
        return out
    }
}
