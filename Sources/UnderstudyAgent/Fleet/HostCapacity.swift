/// A host's entry in the fleet registry (`/understudy/fleet/hosts/<host>`): its resources, what
/// runs there, and how many more VMs it can take as primary and as backup.
///
/// One more primary needs a slot's memory (`fleet.slot_memory_mib`) of the host's available
/// memory; one more backup needs a slot's space in the replica directory's file system (its
/// memory image; on tmpfs, that is memory too), or of memory when no replica directory is
/// configured. `fleet.max_primaries` and `fleet.max_backups`, when set, cap each count.
public struct HostCapacity: Sendable, Codable, Equatable {
    public var host: String
    public var memoryTotalBytes: UInt64
    public var memoryAvailableBytes: UInt64
    public var replicaSpaceTotalBytes: UInt64?
    public var replicaSpaceFreeBytes: UInt64?
    public var slotMemoryBytes: UInt64
    /// VMs published from this host now, as primary and as backup.
    public var primaries: Int
    public var backups: Int
    public var maxPrimaries: Int?
    public var maxBackups: Int?
    /// How many more VMs this host can take as primary, and as backup.
    public var primarySlots: Int
    public var backupSlots: Int
    /// When the node wrote this entry (seconds since 1970).
    public var publishedAt: Double

    /// The capacity of `host` with `resources`, given the fleet's VM entries (those of other
    /// hosts are ignored).
    public init(host: String, resources: HostResources, slotMemoryBytes: UInt64, maxPrimaries: Int?, maxBackups: Int?,
                records: [FleetRecord], publishedAt: Double) {
        precondition(slotMemoryBytes > 0)
        self.host = host
        memoryTotalBytes = resources.memoryTotalBytes
        memoryAvailableBytes = resources.memoryAvailableBytes
        replicaSpaceTotalBytes = resources.replicaSpaceTotalBytes
        replicaSpaceFreeBytes = resources.replicaSpaceFreeBytes
        self.slotMemoryBytes = slotMemoryBytes
        let here = records.filter { $0.host == host }
        primaries = here.filter { $0.role == .primary }.count
        backups = here.filter { $0.role == .backup }.count
        self.maxPrimaries = maxPrimaries
        self.maxBackups = maxBackups
        func slots(limit: Int?, running: Int, freeBytes: UInt64) -> Int {
            let bySpace = Int(clamping: freeBytes / slotMemoryBytes)
            guard let limit else { return bySpace }
            return min(max(0, limit - running), bySpace)
        }
        primarySlots = slots(limit: maxPrimaries, running: primaries, freeBytes: resources.memoryAvailableBytes)
        backupSlots = slots(limit: maxBackups, running: backups, freeBytes: resources.replicaSpaceFreeBytes ?? resources.memoryAvailableBytes)
        self.publishedAt = publishedAt
    }
}
