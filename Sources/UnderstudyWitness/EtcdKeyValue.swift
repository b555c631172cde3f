/// One key of a range read, its value (UTF-8), the lease it is attached to (0: none) and the
/// revision of its last change (what a compare-and-swap on it compares, `EtcdClient.create`).
public struct EtcdKeyValue: Sendable, Equatable {
    public var key: String
    public var value: String
    public var lease: Int64
    public var modRevision: Int64

    public init(key: String, value: String, lease: Int64, modRevision: Int64 = 0) {
        self.key = key
        self.value = value
        self.lease = lease
        self.modRevision = modRevision
    }
}
