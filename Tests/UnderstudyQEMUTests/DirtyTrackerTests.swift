import Foundation
import Testing
import UnderstudyHarness
@testable import UnderstudyQEMU

/// The helper process, mapping `file` as "guest RAM" with the preload library loaded.
final class WriterProcess {
    let process = Process()
    let input = Pipe()
    let output = Pipe()
    let file: String
    let socket: String
    let size: Int

    init(size: Int = 16 << 20) throws {
        self.size = size
        let unique = UUID().uuidString.prefix(8)
        file = "/dev/shm/understudy-test-ram-\(unique)"
        socket = FileManager.default.temporaryDirectory.appendingPathComponent("us-dirty-\(unique).sock").path
        process.executableURL = productsDirectory().appendingPathComponent("DirtyTrackingHelper")
        process.arguments = [file, "\(size)"]
        var environment = ProcessInfo.processInfo.environment
        environment["LD_PRELOAD"] = productsDirectory().appendingPathComponent("libUnderstudyPreload.so").path
        environment["UNDERSTUDY_PRELOAD_SOCKET"] = socket
        process.environment = environment
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        #expect(readLine() == "ready")
    }

    func readLine() -> String {
        var line: [UInt8] = []
        while true {
            let byte = output.fileHandleForReading.readData(ofLength: 1)
            if byte.isEmpty || byte[0] == UInt8(ascii: "\n") { return String(decoding: line, as: UTF8.self) }
            line.append(byte[0])
        }
    }

    func write(pages: [Int]) {
        startWriting(pages: pages)
        #expect(readLine() == "done")
    }

    /// Hands `pages` to the helper without waiting for it to write them.
    func startWriting(pages: [Int]) {
        input.fileHandleForWriting.write(Data((pages.map(String.init).joined(separator: " ") + "\n").utf8))
    }

    func stop() {
        // End of input makes the helper exit by itself.
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
        unlink(file)
        unlink(socket)
    }
}

@Suite("Dirty tracking")
struct DirtyTrackerTests {
    /// One walker, and three sharing the range (the pieces' answers joined in order).
    @Test(.enabled(if: PagemapDirtyTracker.kernelSupportsPagemapScan, "needs PAGEMAP_SCAN (Linux 6.7+)"), arguments: [1, 3])
    func pagemapTrackerReportsExactlyTheWrittenPages(walkers: Int) throws {
        let writer = try WriterProcess()
        defer { writer.stop() }
        let range = try GuestRAM.locate(pid: writer.process.processIdentifier, path: writer.file, size: writer.size)
        let tracker = PagemapDirtyTracker(pid: writer.process.processIdentifier, ramStart: range.start, ramSize: range.size,
                                          pageSize: 4096, controlSocket: writer.socket, walkers: walkers)
        try tracker.arm()
        #expect(try tracker.collect() == [])
        writer.write(pages: [0, 7, 8, 4095])
        #expect(try tracker.collect() == [0, 7, 8, 4095])
        #expect(try tracker.collect() == [], "collecting re-arms: nothing written since")
        // A second session arms the same process again: tracking starts afresh and stays exact.
        try tracker.arm()
        #expect(try tracker.collect() == [])
        writer.write(pages: [3, 9])
        #expect(try tracker.collect() == [3, 9])
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<5 {
            let pages = Set((0..<200).map { _ in Int.random(in: 0..<4096, using: &rng) }).sorted()
            writer.write(pages: pages)
            #expect(try tracker.collect() == pages.map(UInt64.init))
        }
    }

    /// More written regions than one kernel answer holds (every other page of 64 MiB), collected
    /// while the writer is still writing: every collection is strictly increasing (a checkpoint
    /// carries each page once) and together they hold every written page.
    @Test(.enabled(if: PagemapDirtyTracker.kernelSupportsPagemapScan, "needs PAGEMAP_SCAN (Linux 6.7+)"), arguments: [1, 3])
    func collectionsNeverRepeatAPageWhenTheAnswerOverflowsWhileTheGuestWrites(walkers: Int) throws {
        let writer = try WriterProcess(size: 64 << 20)
        defer { writer.stop() }
        let range = try GuestRAM.locate(pid: writer.process.processIdentifier, path: writer.file, size: writer.size)
        let tracker = PagemapDirtyTracker(pid: writer.process.processIdentifier, ramStart: range.start, ramSize: range.size,
                                          pageSize: 4096, controlSocket: writer.socket, walkers: walkers)
        try tracker.arm()
        let everyOther = Array(stride(from: 0, to: writer.size / 4096, by: 2))
        writer.write(pages: everyOther)
        #expect(try tracker.pendingWrites()?.pages == everyOther.count, "counting many regions counts each once")
        #expect(try tracker.collect() == everyOther.map(UInt64.init))
        var rng = SystemRandomNumberGenerator()
        for round in 0..<10 {
            let batches = (0..<40).map { _ in (0..<4000).map { _ in Int.random(in: 0..<(writer.size / 4096), using: &rng) } }
            let pages = Set(batches.joined())
            for batch in batches { writer.startWriting(pages: batch) }
            var seen = Set<UInt64>()
            for _ in 0..<100 {
                let collected = try tracker.collect()
                #expect(zip(collected, collected.dropFirst()).allSatisfy { $0 < $1 }, "round \(round): a collection repeats or reorders pages")
                seen.formUnion(collected)
            }
            for _ in batches { #expect(writer.readLine() == "done") }
            let last = try tracker.collect()
            #expect(zip(last, last.dropFirst()).allSatisfy { $0 < $1 })
            seen.formUnion(last)
            #expect(seen.isSuperset(of: pages.map(UInt64.init)), "round \(round): a written page was never collected")
        }
    }

    /// Pre-copy asks how large the dirty set is before deciding to collect: asking takes nothing.
    /// One walker, and three sharing the range (the pieces' answers joined in order).
    @Test(.enabled(if: PagemapDirtyTracker.kernelSupportsPagemapScan, "needs PAGEMAP_SCAN (Linux 6.7+)"), arguments: [1, 3])
    func countingPendingPagesLeavesThemToTheNextCollection(walkers: Int) throws {
        let writer = try WriterProcess()
        defer { writer.stop() }
        let range = try GuestRAM.locate(pid: writer.process.processIdentifier, path: writer.file, size: writer.size)
        let tracker = PagemapDirtyTracker(pid: writer.process.processIdentifier, ramStart: range.start, ramSize: range.size,
                                          pageSize: 4096, controlSocket: writer.socket, walkers: walkers)
        try tracker.arm()
        #expect(try tracker.pendingWrites() == PendingWrites(pages: 0, pageTables: 0))
        let pages = [1, 2, 3, 10, 511, 512, 513, 4000]
        writer.write(pages: pages)
        // The page tables are QEMU's (2 MiB of its addresses each), wherever guest RAM starts.
        let tables = Set(pages.map { (range.start + UInt64($0) * 4096) / (2 << 20) }).count
        #expect(try tracker.pendingWrites() == PendingWrites(pages: pages.count, pageTables: tables))
        #expect(try tracker.pendingWrites()?.pages == pages.count, "counting does not re-arm")
        #expect(try tracker.collect() == pages.map(UInt64.init))
        #expect(try tracker.pendingWrites() == PendingWrites(pages: 0, pageTables: 0))
    }

    /// What stands in for a look left out (`PreStopLook`): the last collection's page tables.
    @Test func aCollectionsPagesAreCountedByPageTable() {
        let pages: [UInt64] = [0, 1, 511, 512, 1023, 5000, 5001]
        #expect(PendingWrites(collected: pages, pageSize: 4096) == PendingWrites(pages: 7, pageTables: 3))
        #expect(PendingWrites(collected: [], pageSize: 4096) == PendingWrites(pages: 0, pageTables: 0))
    }

    /// Big guests' RAM is walked in pieces: contiguous, covering it all, cut on page-table
    /// (2 MiB) boundaries, never more pieces than walkers.
    @Test func guestRAMIsSplitIntoWholePageTables() {
        let base: UInt64 = 0x7f00_0000_0000
        for (size, parts) in [(UInt64(16) << 20, 3), (UInt64(8) << 30, 2), (UInt64(4) << 20, 4), (UInt64(1) << 30, 1), (UInt64(2) << 20, 2)] {
            let pieces = PagemapScan.split(base..<(base + size), into: parts)
            #expect(!pieces.isEmpty && pieces.count <= parts)
            #expect(pieces.first?.lowerBound == base && pieces.last?.upperBound == base + size)
            #expect(zip(pieces, pieces.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound && $0.upperBound % (2 << 20) == 0 })
        }
        #expect(PagemapScan.split(base..<(base + (UInt64(8) << 30)), into: 2).map(\.count) == [4 << 30, 4 << 30])
    }

    @Test func comparingTrackerReportsExactlyTheChangedPages() throws {
        let writer = try WriterProcess()
        defer { writer.stop() }
        let ram = try GuestRAM(path: writer.file, size: writer.size, create: false)
        let tracker = ComparingDirtyTracker(memory: UnsafeRawBufferPointer(ram.bytes), pageSize: 4096)
        try tracker.arm()
        #expect(try tracker.collect() == [])
        writer.write(pages: [1, 2, 3, 4000])
        #expect(try tracker.collect() == [1, 2, 3, 4000])
        #expect(try tracker.collect() == [])
    }

    /// A page the initial sync reads while the guest runs may hold a value the guest later
    /// reverts; comparison then finds it unchanged. Sent from the tracker's reference, the
    /// backup holds what the comparison assumes, so it ends equal to the guest (read from guest
    /// memory, the backup would keep the transient value).
    @Test func aPageRevertedAfterTheSyncReadItIsStillExactFromTheReference() throws {
        let memory = AnonymousMemory(size: 4 * 4096, purpose: "a test guest")
        let guest = memory.bytes
        guest.storeBytes(of: 0x11, toByteOffset: 4096, as: UInt8.self)
        let tracker = ComparingDirtyTracker(memory: UnsafeRawBufferPointer(guest), pageSize: 4096)
        try tracker.arm()
        let reference = try #require(tracker.reference)
        var backup = [UInt8](repeating: 0, count: guest.count)

        guest.storeBytes(of: 0x22, toByteOffset: 4096, as: UInt8.self)   // the guest writes while the sync runs
        backup.withUnsafeMutableBytes { $0.copyMemory(from: reference) } // the sync's first round: all pages
        guest.storeBytes(of: 0x11, toByteOffset: 4096, as: UInt8.self)   // and reverts the write
        for index in try tracker.collect() {                             // the paused checkpoint
            let page = Int(index) * 4096..<(Int(index) + 1) * 4096
            backup.replaceSubrange(page, with: guest[page])
        }
        #expect(backup.elementsEqual(guest), "the backup equals the guest at the checkpoint")
    }

    @Test func armingWithoutThePreloadLibraryFailsClearly() throws {
        let tracker = PagemapDirtyTracker(pid: getpid(), ramStart: 0, ramSize: 4096, pageSize: 4096,
                                          controlSocket: "/nonexistent/understudy.sock")
        let error = #expect(throws: QEMUError.self) { try tracker.arm() }
        #expect("\(error!)".contains("does not answer"), "\(error!)")
    }
}
