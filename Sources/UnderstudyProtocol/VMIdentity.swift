/// What the two agents must agree on before any page moves: which VM, how its memory is cut,
/// and how large its replicated disks are, in order.
public struct VMIdentity: Sendable, Equatable, CustomStringConvertible {
    public static let maxIDLength = 128
    public static let diskSectorSize: UInt64 = 512
    public var id: String
    public var memorySize: UInt64
    public var pageSize: UInt32
    /// Bytes of each replicated disk, in the guest's order; empty when the VM has none. Disk
    /// changes address the disks as one space, each disk starting where the one before ends
    /// (`DiskSet`), so both nodes must have the same sizes in the same order, not just the same sum.
    public var diskSizes: [UInt64]
    /// Bytes of all replicated disks together: the disk address space's size.
    public var diskSize: UInt64 { diskSizes.reduce(0, &+) }
    /// Most disks a VM may have.
    public static let maxDiskCount = 8

    public init(id: String, memorySize: UInt64, pageSize: UInt32 = 4096, diskSizes: [UInt64]) {
        self.id = id
        self.memorySize = memorySize
        self.pageSize = pageSize
        self.diskSizes = diskSizes
    }

    /// A VM with one disk of `diskSize` bytes (none when 0).
    public init(id: String, memorySize: UInt64, pageSize: UInt32 = 4096, diskSize: UInt64 = 0) {
        self.init(id: id, memorySize: memorySize, pageSize: pageSize, diskSizes: diskSize > 0 ? [diskSize] : [])
    }

    public var pageCount: UInt64 { memorySize / UInt64(pageSize) }

    public var description: String {
        "\(id) (\(memorySize) bytes, \(pageSize)-byte pages, " + diskDescription + ")"
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
        guard diskSizes.count <= VMIdentity.maxDiskCount else {
            throw .malformed("\(diskSizes.count) disks, at most \(VMIdentity.maxDiskCount) are supported")
        }
        for size in diskSizes where size == 0 || size % VMIdentity.diskSectorSize != 0 {
            throw .malformed("disk size \(size) is not a positive multiple of \(VMIdentity.diskSectorSize) bytes")
        }
        guard diskSizes.reduce(UInt64(0), { $0.addingReportingOverflow($1).overflow ? .max : $0 + $1 }) < .max else {
            throw .malformed("the disks' sizes overflow")
        }
    }

    /// Describes the first difference from `other`, nil when they match.
    public func mismatch(with other: VMIdentity) -> String? {
        if id != other.id { return "VM id is \"\(other.id)\", expected \"\(id)\"" }
        if memorySize != other.memorySize { return "memory size is \(other.memorySize), expected \(memorySize)" }
        if pageSize != other.pageSize { return "page size is \(other.pageSize), expected \(pageSize)" }
        if diskSizes != other.diskSizes { return "disks are \(other.diskDescription), expected \(diskDescription)" }
        return nil
    }

    /// "no disk", "a 1048576-byte disk", "2 disks of 1048576, 2097152 bytes".
    public var diskDescription: String {
        switch diskSizes.count {
        case 0: "no disk"
        case 1: "a \(diskSizes[0])-byte disk"
        default: "\(diskSizes.count) disks of " + diskSizes.map(String.init).joined(separator: ", ") + " bytes"
        }
    }
}
