/// One key of a range read, its value (UTF-8) and the lease it is attached to (0: none).
public struct EtcdKeyValue: Sendable, Equatable {
    public var key: String
    public var value: String
    public var lease: Int64

    public init(key: String, value: String, lease: Int64) {
        self.key = key
        self.value = value
        self.lease = lease
    }
}
