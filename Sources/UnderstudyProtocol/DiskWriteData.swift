/// What one guest disk write leaves on the disk.
public enum DiskWriteData: Sendable, Equatable {
    case bytes([UInt8])
    case zeroes(length: Int)

    /// Bytes of disk the write covers.
    public var length: Int {
        switch self {
        case .bytes(let bytes): bytes.count
        case .zeroes(let length): length
        }
    }

}
