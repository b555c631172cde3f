import CUnderstudyShims
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Exact tracking through the preload library and PAGEMAP_SCAN, from outside QEMU.
public final class PagemapDirtyTracker: DirtyTracker, @unchecked Sendable {
    public let method = DirtyTrackingMethod.pagemap
    public var reference: UnsafeRawBufferPointer? { nil }
    private let pid: Int32
    private let ramStart: UInt64
    private let ramSize: UInt64
    private let pageSize: UInt64
    private let controlSocket: String
    private var pagemap: Int32 = -1
    private var buffer: [us_page_region]
    /// Walkers for all but the first piece of a big guest's RAM (see `PagemapScan`).
    private let workers: [PagemapScanWorker]

    /// Guest RAM per walker: below it, waking a second thread costs more than it saves.
    static let bytesPerWalker: UInt64 = 1 << 30

    /// - Parameters:
    ///   - ramStart, ramSize: where guest RAM is mapped in QEMU (see `GuestRAM.locate`).
    ///   - controlSocket: the preload library's socket in that QEMU.
    ///   - walkers: threads that walk the page tables together (nil: one per core, at most one per
    ///     `bytesPerWalker` of RAM).
    public init(pid: Int32, ramStart: UInt64, ramSize: UInt64, pageSize: Int, controlSocket: String, walkers: Int? = nil) {
        self.pid = pid
        self.ramStart = ramStart
        self.ramSize = ramSize
        self.pageSize = UInt64(pageSize)
        self.controlSocket = controlSocket
        buffer = [us_page_region](repeating: us_page_region(), count: 4096)
        let count = walkers ?? min(ProcessInfo.processInfo.activeProcessorCount, Int(max(1, ramSize / Self.bytesPerWalker)))
        workers = (1..<max(1, count)).map { PagemapScanWorker(name: "pagemap-walk-\($0)") }
    }

    deinit {
        for worker in workers { worker.stop() }
        if pagemap >= 0 { close(pagemap) }
    }

    public func arm() throws {
        if pagemap >= 0 { close(pagemap) }
        pagemap = open("/proc/\(pid)/pagemap", O_RDONLY | O_CLOEXEC)
        guard pagemap >= 0 else { throw QEMUError.tracking("open /proc/\(pid)/pagemap: \(String(cString: strerror(errno)))") }
        let reply = try PreloadControl.request("ARM \(String(ramStart, radix: 16)) \(String(ramSize, radix: 16))", socket: controlSocket)
        guard reply == "OK" else { throw QEMUError.tracking("the preload library could not arm tracking: \(reply)") }
        // Drain anything marked between registration and now, so the first interval starts clean.
        _ = try collect()
    }

    public func collect() throws -> [UInt64] {
        var pages: [UInt64] = []
        for region in try scan(rearming: true) {
            var address = region.start
            while address < region.end {
                pages.append((address - ramStart) / pageSize)
                address += pageSize
            }
        }
        return pages
    }

    public func pendingWrites() throws -> PendingWrites? {
        var count = PendingWrites.Counter()
        for region in try scan(rearming: false) {
            count.add(pages: Int((region.end - region.start) / pageSize),
                      tables: (region.start / PagemapScan.pageTableSpan)...((region.end - 1) / PagemapScan.pageTableSpan))
        }
        return count.total
    }

    /// The written regions of all guest RAM, in order: the first piece walked on this thread, the
    /// others at the same time on the workers.
    private func scan(rearming: Bool) throws(QEMUError) -> [us_page_region] {
        let pieces = PagemapScan.split(ramStart..<(ramStart + ramSize), into: workers.count + 1)
        for (worker, piece) in zip(workers, pieces.dropFirst()) {
            worker.start(PagemapScan(pagemap: pagemap, range: piece, rearming: rearming))
        }
        var failure: QEMUError?
        var found: [us_page_region] = []
        do throws(QEMUError) {
            found = try PagemapScan(pagemap: pagemap, range: pieces[0], rearming: rearming).run(buffer: &buffer)
        } catch {
            failure = error
        }
        // Every started walk is waited for, failed or not: the next scan hands out new ones.
        for worker in workers.prefix(pieces.count - 1) {
            do throws(QEMUError) { found += try worker.finish() } catch { failure = failure ?? error }
        }
        if let failure { throw failure }
        return found
    }

    /// True when this kernel can do asynchronous write-protect tracking (probed on this process).
    public static var kernelSupportsPagemapScan: Bool {
        let fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var regions = [us_page_region](repeating: us_page_region(), count: 1)
        var walkEnd: UInt64 = 0
        // An empty range is valid on kernels that have the ioctl and EINVAL/ENOTTY elsewhere.
        let page = UInt64(getpagesize())
        let address = UInt64(UInt(bitPattern: UnsafeRawPointer(regions.withUnsafeBufferPointer { $0.baseAddress! }))) & ~(page - 1)
        let result = regions.withUnsafeMutableBufferPointer {
            us_pagemap_scan_written(fd, address, address + page, $0.baseAddress, 1, &walkEnd)
        }
        return result >= 0 || errno != ENOTTY && errno != EINVAL
    }
}
