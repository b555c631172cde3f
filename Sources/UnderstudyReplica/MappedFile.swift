import CUnderstudyShims
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import UnderstudySystem

/// A file mapped shared into memory: writes go to the page cache at once and survive the
/// process being killed (not a host power loss).
final class MappedFile: @unchecked Sendable {
    let path: String
    let fd: Int32
    private(set) var size: Int
    private(set) var bytes: UnsafeMutableRawBufferPointer

    /// Opens or creates `path`, sets its size to `size` (extending with zeroes) or, when `size`
    /// is nil, keeps the size the file has.
    init(path: String, size: Int?, mode: mode_t = 0o600) throws(ReplicaError) {
        self.path = path
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, mode)
        guard fd >= 0 else { throw .io(operation: "open", path: path, errno: errno) }
        self.size = 0
        bytes = UnsafeMutableRawBufferPointer(start: nil, count: 0)
        do throws(ReplicaError) {
            var info = stat()
            guard fstat(fd, &info) == 0 else { throw .io(operation: "stat", path: path, errno: errno) }
            try resize(to: size ?? Int(info.st_size))
        } catch {
            close(fd)
            throw error
        }
    }

    /// Changes the file's size and remaps it. Growing fills with zeroes.
    func resize(to newSize: Int) throws(ReplicaError) {
        unmap()
        guard ftruncate(fd, off_t(newSize)) == 0 else { throw .io(operation: "resize to \(newSize) bytes", path: path, errno: errno) }
        size = newSize
        guard newSize > 0 else { return }
        // Reserve the blocks now: a full filesystem must fail here with ENOSPC, not later as a
        // SIGBUS when a write through the mapping finds no room.
        let reserved = posix_fallocate(fd, 0, off_t(newSize))
        guard reserved == 0 else { throw .io(operation: "reserve \(newSize) bytes for", path: path, errno: reserved) }
        let address = mmap(nil, newSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let address, address != MAP_FAILED else { throw .io(operation: "mmap", path: path, errno: errno) }
        bytes = UnsafeMutableRawBufferPointer(start: address, count: newSize)
    }

    /// Replaces the whole content with zeroes at a cost in proportion to the data it held: each
    /// range that holds data is punched out and reserved again (a reservation reads as zeroes),
    /// the rest already reads as zeroes. Reserving the whole file anew would clear every page of
    /// a tmpfs replica: seconds for a guest of a few GiB, at the start of every full sync.
    func zero() throws(ReplicaError) {
        for range in FileDataRanges.of(fd: fd, size: UInt64(size)) {
            let (offset, length) = (off_t(range.lowerBound), off_t(range.count))
            guard us_zero_file_range(fd, Int64(offset), Int64(length), 1) == 0 else {
                // A file system that cannot punch holes: drop all pages by truncating instead.
                guard errno == EOPNOTSUPP else { throw .io(operation: "punch a hole into", path: path, errno: errno) }
                let keep = size
                try resize(to: 0)
                return try resize(to: keep)
            }
            let reserved = posix_fallocate(fd, offset, length)
            guard reserved == 0 else { throw .io(operation: "reserve \(length) bytes for", path: path, errno: reserved) }
        }
    }

    private func unmap() {
        if let base = bytes.baseAddress { munmap(base, size) }
        bytes = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    }

    deinit {
        unmap()
        close(fd)
    }
}
