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
    private var regions: [us_page_region]

    /// - Parameters:
    ///   - ramStart, ramSize: where guest RAM is mapped in QEMU (see `GuestRAM.locate`).
    ///   - controlSocket: the preload library's socket in that QEMU.
    public init(pid: Int32, ramStart: UInt64, ramSize: UInt64, pageSize: Int, controlSocket: String) {
        self.pid = pid
        self.ramStart = ramStart
        self.ramSize = ramSize
        self.pageSize = UInt64(pageSize)
        self.controlSocket = controlSocket
        regions = [us_page_region](repeating: us_page_region(), count: 4096)
    }

    deinit { if pagemap >= 0 { close(pagemap) } }

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
        try scan(rearming: true) { region in
            var address = region.start
            while address < region.end {
                pages.append((address - ramStart) / pageSize)
                address += pageSize
            }
        }
        return pages
    }

    public func pendingPageCount() throws -> Int? {
        var count: UInt64 = 0
        try scan(rearming: false) { count += ($0.end - $0.start) / pageSize }
        return Int(count)
    }

    private func scan(rearming: Bool, _ body: (us_page_region) -> Void) throws {
        var start = ramStart
        let end = ramStart + ramSize
        while start < end {
            var walkEnd: UInt64 = 0
            let count = regions.withUnsafeMutableBufferPointer {
                rearming ? us_pagemap_scan_written(pagemap, start, end, $0.baseAddress, UInt64($0.count), &walkEnd)
                    : us_pagemap_peek_written(pagemap, start, end, $0.baseAddress, UInt64($0.count), &walkEnd)
            }
            guard count >= 0 else { throw QEMUError.tracking("PAGEMAP_SCAN: \(String(cString: strerror(errno)))") }
            for region in regions[0..<count] { body(region) }
            guard walkEnd > start else { break }
            start = walkEnd
        }
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
