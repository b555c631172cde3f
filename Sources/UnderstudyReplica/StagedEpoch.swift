import UnderstudyProtocol

/// One checkpoint received whole and verified, waiting to be applied.
public struct StagedEpoch: Sendable {
    public let epoch: UInt64
    public private(set) var pageBatches: [PageBatch] = []
    /// The DEVICE_STATE chunks' bytes, in order.
    public private(set) var deviceState: [UInt8] = []
    /// `deviceState` is encoded (`DeviceStateCodec`, the device-state-delta capability), not the state itself.
    public let deviceStateEncoded: Bool
    public private(set) var diskBatches: [DiskWriteBatch] = []

    public init(epoch: UInt64, deviceStateEncoded: Bool = false) {
        self.epoch = epoch
        self.deviceStateEncoded = deviceStateEncoded
    }

    public mutating func add(_ batch: PageBatch) { pageBatches.append(batch) }
    public mutating func add(_ chunk: DeviceStateChunk) { deviceState.append(contentsOf: chunk.data) }
    public mutating func add(_ batch: DiskWriteBatch) { diskBatches.append(batch) }

    public var pageCount: Int { pageBatches.reduce(0) { $0 + $1.entries.count } }
}
