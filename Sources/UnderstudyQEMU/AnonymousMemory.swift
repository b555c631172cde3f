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

    /// Maps the pages of `range` (page-aligned) writable without changing a byte, so that what is
    /// written there next takes no page fault. A page that is read before its first write maps
    /// the shared zero page, and the write then replaces it (copy on write), which flushes the
    /// TLB of every core this process runs on: during an initial sync into a zeroed last-sent
    /// copy those flushes were 40 % of the CPU time. Best effort: a kernel without
    /// MADV_POPULATE_WRITE (before 5.14) just takes the faults.
    public func populate(bytes range: Range<Int>) {
        guard !range.isEmpty else { return }
        let part = UnsafeMutableRawBufferPointer(rebasing: bytes[range])
        _ = madvise(part.baseAddress, part.count, MADV_POPULATE_WRITE)
    }
}
