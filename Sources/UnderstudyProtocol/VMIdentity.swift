/// What the two agents must agree on before any page moves: which VM, how its memory is cut,
/// and how large its replicated disk is.
public struct VMIdentity: Sendable, Equatable, CustomStringConvertible {
    public static let maxIDLength = 128
    public static let diskSectorSize: UInt64 = 512
    public var id: String
    public var memorySize: UInt64
    public var pageSize: UInt32
    /// Bytes of the replicated disk; 0 when the VM has none.
    public var diskSize: UInt64

    public init(id: String, memorySize: UInt64, pageSize: UInt32 = 4096, diskSize: UInt64 = 0) {
        self.id = id
        self.memorySize = memorySize
        self.pageSize = pageSize
        self.diskSize = diskSize
    }

    public var pageCount: UInt64 { memorySize / UInt64(pageSize) }

    public var description: String {
        "\(id) (\(memorySize) bytes, \(pageSize)-byte pages" + (diskSize > 0 ? ", \(diskSize)-byte disk)" : ", no disk)")
    }

    /// Checks the identity is usable: a short id, a power-of-two page size, whole pages.
    public func validate() throws(ProtocolError) {
        guard !id.isEmpty, id.utf8.count <= VMIdentity.maxIDLength else {
            throw .malformed("VM id must be 1 to \(VMIdentity.maxIDLength) bytes, got \(id.utf8.count)")
        }
        guard pageSize >= 512, pageSize <= 65536, pageSize & (pageSize - 1) == 0 else {
            throw .malformed("page size \(pageSize) is not a power of two between 512 and 65536")
        }
        guard memorySize > 0, memorySize % UInt64(pageSize) == 0 else {
            throw .malformed("memory size \(memorySize) is not a positive multiple of the page size \(pageSize)")
        }
        guard diskSize % VMIdentity.diskSectorSize == 0 else {
            throw .malformed("disk size \(diskSize) is not a multiple of \(VMIdentity.diskSectorSize) bytes")
        }
    }

    /// Describes the first difference from `other`, nil when they match.
    public func mismatch(with other: VMIdentity) -> String? {
        if id != other.id { return "VM id is \"\(other.id)\", expected \"\(id)\"" }
        if memorySize != other.memorySize { return "memory size is \(other.memorySize), expected \(memorySize)" }
        if pageSize != other.pageSize { return "page size is \(other.pageSize), expected \(pageSize)" }
        if diskSize != other.diskSize { return "disk size is \(other.diskSize), expected \(diskSize)" }
        return nil
    }
}
