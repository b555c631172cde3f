import Foundation
#if canImport(Glibc)
import Glibc
#endif
import UnderstudySystem

/// Guest RAM as a file shared between QEMU (`memory-backend-file,share=on`) and the agent.
public final class GuestRAM: @unchecked Sendable {
    public let path: String
    public let size: Int
    /// The agent's own mapping of the file.
    public let bytes: UnsafeMutableRawBufferPointer
    /// Kept open to ask the file system where the file has data (`dataRanges`).
    private let fd: Int32

    /// Creates (or reuses) `path` with `size` bytes and maps it shared. A created file is new
    /// (a file or symbolic link already at `path` is refused, named) and owner-only: it is the
    /// guest's memory, which QEMU maps as root.
    public init(path: String, size: Int, create: Bool) throws(QEMUError) {
        self.path = path
        self.size = size
        let fd = create ? try ExclusiveFile.create(path, purpose: "guest RAM") : open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw .io("open guest RAM \(path): \(String(cString: strerror(errno)))") }
        var mapped = false
        defer { if !mapped { close(fd) } }
        if create {
            guard ftruncate(fd, off_t(size)) == 0 else { throw .io("size guest RAM \(path): \(String(cString: strerror(errno)))") }
            let reserved = posix_fallocate(fd, 0, off_t(size))
            guard reserved == 0 else { throw .io("reserve \(size) bytes for guest RAM \(path): \(String(cString: strerror(reserved)))") }
        }
        let address = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let address, address != MAP_FAILED else { throw .io("map guest RAM \(path): \(String(cString: strerror(errno)))") }
        bytes = UnsafeMutableRawBufferPointer(start: address, count: size)
        self.fd = fd
        mapped = true
    }

    deinit {
        munmap(bytes.baseAddress, size)
        close(fd)
    }

    /// The byte ranges of guest memory that may hold data. The rest was never written by the
    /// guest (nor read: a read of a hole through a shared mapping fills it) and reads as zeroes;
    /// a reservation (`posix_fallocate`) stays a hole until written.
    public func dataRanges() -> [Range<UInt64>] { FileDataRanges.of(fd: fd, size: UInt64(size)) }

    /// Finds where process `pid` maps the file at `path` with exactly `size` bytes, from
    /// /proc/PID/maps: the range dirty tracking must cover inside that process.
    public static func locate(pid: Int32, path: String, size: Int) throws(QEMUError) -> (start: UInt64, size: UInt64) {
        guard let maps = try? String(contentsOfFile: "/proc/\(pid)/maps", encoding: .utf8) else {
            throw .tracking("cannot read /proc/\(pid)/maps")
        }
        let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        for line in maps.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 6, fields[5...].joined(separator: " ") == resolved || fields[5...].joined(separator: " ") == path else { continue }
            let bounds = fields[0].split(separator: "-")
            guard bounds.count == 2, let start = UInt64(bounds[0], radix: 16), let end = UInt64(bounds[1], radix: 16),
                  end - start == UInt64(size) else { continue }
            return (start, end - start)
        }
        throw .tracking("process \(pid) does not map \(path) (\(size) bytes)")
    }
}
