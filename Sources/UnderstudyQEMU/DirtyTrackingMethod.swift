/// How the primary learns which guest pages were written since the last collection.
public enum DirtyTrackingMethod: String, Sendable, Codable, CustomStringConvertible {
    /// userfaultfd asynchronous write-protect armed inside QEMU, read with PAGEMAP_SCAN (Linux 6.7+): exact.
    case pagemap
    /// Compare every page with a copy taken at the last collection: exact, but costs a memory-size
    /// copy and a full compare per checkpoint. For kernels without PAGEMAP_SCAN.
    case compare

    public var description: String { rawValue }
}
