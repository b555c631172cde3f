import Foundation
import UnderstudyProtocol

/// The content of one checkpoint, copied out while the guest was paused.
/// The source allocates it for the dirty set, fills `pages`, and sets the device state and pause.
public final class CapturedCheckpoint: @unchecked Sendable {
    public let pageSize: Int
    /// Page numbers in `pages` order.
    public let pageIndices: [UInt64]
    /// The pages' bytes, contiguous, `pageIndices.count * pageSize`.
    public let pages: UnsafeMutableRawBufferPointer
    public var deviceState: [UInt8] = []
    /// The guest's disk changes of the epoch, in order.
    public var diskChanges: [DiskChange] = []
    /// Why `diskChanges` is not the whole epoch's (the record overflowed); nil when it is.
    public var diskChangesLost: (any Error & Sendable)?
    /// How long the guest was paused for this capture.
    public var pause: Duration = .zero
    /// Where the pause went (`PauseBreakdown`), as far as the source knows.
    public var pauseBreakdown = PauseBreakdown()
    private let buffer: AnonymousMemory

    public init(pageIndices: [UInt64], pageSize: Int) {
        self.pageSize = pageSize
        self.pageIndices = pageIndices
        buffer = StagingPool.shared.take(byteCount: pageIndices.count * pageSize)
        pages = UnsafeMutableRawBufferPointer(rebasing: buffer.bytes[0..<(pageIndices.count * pageSize)])
    }

    /// Copies `pageIndices` out of guest `memory` (the copy out of a paused guest).
    public convenience init(copying pageIndices: [UInt64], from memory: UnsafeRawBufferPointer, pageSize: Int) {
        self.init(pageIndices: pageIndices, pageSize: pageSize)
        if let staging = pages.baseAddress {
            GuestPageCopy.copy(pageIndices, at: 0..<pageIndices.count, from: memory, to: staging, pageSize: pageSize) { $0 }
        }
    }

    deinit { StagingPool.shared.give(buffer) }

    public func page(at position: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: pages[(position * pageSize)..<((position + 1) * pageSize)])
    }
}
