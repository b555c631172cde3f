import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Exact tracking by comparison with a private copy of guest memory.
public final class ComparingDirtyTracker: DirtyTracker, @unchecked Sendable {
    public let method = DirtyTrackingMethod.compare
    private let memory: UnsafeRawBufferPointer
    private let pageSize: Int
    private let referenceMemory: AnonymousMemory
    private var copy: UnsafeMutableRawBufferPointer { referenceMemory.bytes }
    public var reference: UnsafeRawBufferPointer? { UnsafeRawBufferPointer(copy) }

    public init(memory: UnsafeRawBufferPointer, pageSize: Int) {
        self.memory = memory
        self.pageSize = pageSize
        referenceMemory = AnonymousMemory(size: memory.count, purpose: "the comparison copy")
    }

    public func arm() throws {
        copy.copyMemory(from: memory)
    }

    public func pendingWrites() throws -> PendingWrites? { nil }

    public func collect() throws -> [UInt64] {
        var pages: [UInt64] = []
        var offset = 0
        while offset < memory.count {
            if memcmp(memory.baseAddress! + offset, copy.baseAddress! + offset, pageSize) != 0 {
                (copy.baseAddress! + offset).copyMemory(from: memory.baseAddress! + offset, byteCount: pageSize)
                pages.append(UInt64(offset / pageSize))
            }
            offset += pageSize
        }
        return pages
    }
}
