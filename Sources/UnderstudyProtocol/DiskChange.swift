/// One change the guest made to its disk, in the order the disk server applied it.
public enum DiskChange: Sendable, Equatable {
    /// Bytes written, or a range zeroed (WRITE_ZEROES, TRIM).
    case write(offset: UInt64, data: DiskWriteData)
    /// Everything before this change was made durable (FLUSH, or a write with FUA).
    case flush

    /// Data bytes the change carries on the wire before compression.
    public var wireCapacity: Int {
        if case .write(_, .bytes(let bytes)) = self { bytes.count } else { 0 }
    }
}
