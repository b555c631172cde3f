/// A chunk of the device-state blob of one epoch. Chunks arrive in order.
public struct DeviceStateChunk: Sendable, Equatable {
    /// Payload bytes before the data: epoch and offset.
    public static let headerSize = 16

    public var epoch: UInt64
    public var offset: UInt64
    public var data: [UInt8]

    public init(epoch: UInt64, offset: UInt64, data: [UInt8]) {
        self.epoch = epoch
        self.offset = offset
        self.data = data
    }
}
