/// Collects written pages. `arm` starts tracking; each `collect` returns the pages written
/// since the previous `collect` (or `arm`), sorted, and starts the next interval.
public protocol DirtyTracker: AnyObject, Sendable {
    var method: DirtyTrackingMethod { get }
    func arm() throws
    func collect() throws -> [UInt64]
    /// What `collect` would find now, without collecting it; nil when that costs as much as
    /// collecting (comparison).
    func pendingWrites() throws -> PendingWrites?
    /// The copy that collections compare guest memory against, when tracking works that way;
    /// nil when it sees every write (pagemap).
    var reference: UnsafeRawBufferPointer? { get }
}

/// The written pages a collection would find now, and in how many page tables (2 MiB of QEMU's
/// address space each) they lie: collecting re-arms tracking in each of those tables, and each
/// costs a TLB flush on every core running one of QEMU's threads.
public struct PendingWrites: Sendable, Equatable {
    public var pages: Int
    public var pageTables: Int

    public init(pages: Int, pageTables: Int) {
        self.pages = pages
        self.pageTables = pageTables
    }

    /// The count of sorted `pages` (guest page indices) as a collection found them: their tables
    /// as if guest RAM began on a table boundary, as QEMU maps it on x86-64 (2 MiB aligned).
    init(collected pages: [UInt64], pageSize: Int) {
        let pagesPerTable = PagemapScan.pageTableSpan / UInt64(pageSize)
        var count = Counter()
        for page in pages { count.add(pages: 1, tables: (page / pagesPerTable)...(page / pagesPerTable)) }
        self = count.total
    }

    /// Counts written pages given in address order, and the distinct page tables they lie in: a
    /// run of pages may share its first table with the run before.
    struct Counter {
        private(set) var total = PendingWrites(pages: 0, pageTables: 0)
        private var lastTable: UInt64?

        /// Adds `pages` written pages lying in the page tables numbered `tables`, which begin at or
        /// after the last table added.
        mutating func add(pages: Int, tables: ClosedRange<UInt64>) {
            total.pages += pages
            total.pageTables += tables.count - (tables.lowerBound == lastTable ? 1 : 0)
            lastTable = tables.upperBound
        }
    }
}
