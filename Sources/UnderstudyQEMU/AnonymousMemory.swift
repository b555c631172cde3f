import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A memory-sized private buffer (the last-sent copy, the comparison copy, a synthetic guest,
/// checkpoint staging).
/// Anonymous and lazily zero-filled: pages never touched cost no memory, which a 1 GiB guest
/// needs and `allocate` would not give.
public final class AnonymousMemory: @unchecked Sendable {
    public let bytes: UnsafeMutableRawBufferPointer

    /// - Parameter purpose: what the buffer is for, named if the mapping fails.
    public init(size: Int, purpose: String) {
        let address = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        precondition(address != MAP_FAILED, "cannot map \(size) bytes for \(purpose)")
        bytes = UnsafeMutableRawBufferPointer(start: address, count: size)
    }

    deinit { munmap(bytes.baseAddress, bytes.count) }

    /// Makes every byte zero again, giving the pages back to the kernel (private anonymous pages
    /// read as zero after MADV_DONTNEED).
    public func zero() { zero(bytes: 0..<bytes.count) }

    /// Makes the bytes in `range` zero again, giving their pages back to the kernel; `range` starts
    /// on a page boundary.
    public func zero(bytes range: Range<Int>) {
        guard !range.isEmpty else { return }
        let part = UnsafeMutableRawBufferPointer(rebasing: bytes[range])
        if madvise(part.baseAddress, part.count, MADV_DONTNEED) != 0 { part.initializeMemory(as: UInt8.self, repeating: 0) }
    }
}
