import UnderstudyProtocol

/// One checkpoint received whole and verified, waiting to be applied.
public struct StagedEpoch: Sendable {
    public let epoch: UInt64
    public private(set) var pageBatches: [PageBatch] = []
    public private(set) var deviceState: [UInt8] = []
    public private(set) var diskBatches: [DiskWriteBatch] = []

    public init(epoch: UInt64) { self.epoch = epoch }

    public mutating func add(_ batch: PageBatch) { pageBatches.append(batch) }
    public mutating func add(_ chunk: DeviceStateChunk) { deviceState.append(contentsOf: chunk.data) }
    public mutating func add(_ batch: DiskWriteBatch) { diskBatches.append(batch) }

    public var pageCount: Int { pageBatches.reduce(0) { $0 + $1.entries.count } }
}
