import Foundation
import Testing
@testable import UnderstudyQEMU
#if canImport(Glibc)
import Glibc
#endif

@Suite("Anonymous memory")
struct AnonymousMemoryTests {
    /// Page faults this thread has taken so far.
    private func threadFaults() -> Int {
        var usage = rusage()
        // RUSAGE_THREAD (1) is only declared under _GNU_SOURCE.
        getrusage(__rusage_who_t(1), &usage)
        return usage.ru_minflt + usage.ru_majflt
    }

    /// Reads every page, then writes it, the way the encoder checks a last-sent copy before
    /// replacing it; returns the page faults that took on this thread.
    private func readThenWrite(_ memory: AnonymousMemory, pages: Int) -> Int {
        let pageSize = Int(getpagesize())
        let before = threadFaults()
        var sum = 0
        for page in 0..<pages { sum &+= Int(memory.bytes[page * pageSize]) }
        for page in 0..<pages { memory.bytes[page * pageSize + 1] = UInt8(truncatingIfNeeded: sum | 1) }
        return threadFaults() - before
    }

    /// Populated pages take no fault when read and then written: without it each page faults
    /// twice (the zero page mapped on the read, replaced on the write with a TLB flush).
    @Test func populatedPagesAreReadAndWrittenWithoutFaults() {
        let pages = 256
        let memory = AnonymousMemory(size: pages * Int(getpagesize()), purpose: "a test")
        #expect(readThenWrite(memory, pages: pages) >= pages, "untouched pages fault")
        memory.zero()
        memory.populate(bytes: 0..<memory.bytes.count)
        #expect(readThenWrite(memory, pages: pages) < pages / 8)
    }

    /// Populating keeps what the pages hold.
    @Test func populatingChangesNoByte() {
        let pageSize = Int(getpagesize())
        let memory = AnonymousMemory(size: 8 * pageSize, purpose: "a test")
        for page in 0..<4 { memory.bytes[page * pageSize + 9] = UInt8(page + 1) }
        memory.populate(bytes: 0..<memory.bytes.count)
        #expect((0..<8).map { memory.bytes[$0 * pageSize + 9] } == [1, 2, 3, 4, 0, 0, 0, 0])
    }
}
