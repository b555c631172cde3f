/// Start of initial synchronisation: the backup zeroes its replica memory and disk; disk content
/// follows as disk-write batches of epoch 0.
public struct SyncBegin: Sendable, Equatable {
    public var pageCount: UInt64
    public init(pageCount: UInt64) { self.pageCount = pageCount }
}
