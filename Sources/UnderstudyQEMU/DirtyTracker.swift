import CUnderstudyShims
import Foundation
import UnderstudySystem
#if canImport(Glibc)
import Glibc
#endif

/// How the primary learns which guest pages were written since the last collection.
public enum DirtyTrackingMethod: String, Sendable, Codable, CustomStringConvertible {
    /// userfaultfd asynchronous write-protect armed inside QEMU, read with PAGEMAP_SCAN (Linux 6.7+): exact.
    case pagemap
    /// Compare every page with a copy taken at the last collection: exact, but costs a memory-size
    /// copy and a full compare per checkpoint. For kernels without PAGEMAP_SCAN.
    case compare

    public var description: String { rawValue }
}

/// Collects written pages. `arm` starts tracking; each `collect` returns the pages written
/// since the previous `collect` (or `arm`), sorted, and starts the next interval.
public protocol DirtyTracker: AnyObject, Sendable {
    var method: DirtyTrackingMethod { get }
    func arm() throws
    func collect() throws -> [UInt64]
    /// The copy that collections compare guest memory against, when tracking works that way;
    /// nil when it sees every write (pagemap).
    var reference: UnsafeRawBufferPointer? { get }
}

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
        var start = ramStart
        let end = ramStart + ramSize
        while start < end {
            var walkEnd: UInt64 = 0
            let count = regions.withUnsafeMutableBufferPointer {
                us_pagemap_scan_written(pagemap, start, end, $0.baseAddress, UInt64($0.count), &walkEnd)
            }
            guard count >= 0 else { throw QEMUError.tracking("PAGEMAP_SCAN: \(String(cString: strerror(errno)))") }
            for region in regions[0..<count] {
                var address = region.start
                while address < region.end {
                    pages.append((address - ramStart) / pageSize)
                    address += pageSize
                }
            }
            guard walkEnd > start else { break }
            start = walkEnd
        }
        return pages
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
