/// Collects written pages. `arm` starts tracking; each `collect` returns the pages written
/// since the previous `collect` (or `arm`), sorted, and starts the next interval.
public protocol DirtyTracker: AnyObject, Sendable {
    var method: DirtyTrackingMethod { get }
    func arm() throws
    func collect() throws -> [UInt64]
    /// How many pages `collect` would return now, without collecting them; nil when that costs
    /// as much as collecting (comparison).
    func pendingPageCount() throws -> Int?
    /// The copy that collections compare guest memory against, when tracking works that way;
    /// nil when it sees every write (pagemap).
    var reference: UnsafeRawBufferPointer? { get }
}
