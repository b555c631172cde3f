#if canImport(Glibc)
import Glibc
#endif

/// Where a file may hold data, asked of the file system with lseek's SEEK_DATA and SEEK_HOLE:
/// everything else is a hole and reads as zeroes. A guest's disk image and its memory file are
/// mostly holes when young, and a full synchronisation skips them.
public enum FileDataRanges {
    /// The byte ranges of `fd`'s first `size` bytes that may hold data, in order. Where the file
    /// system cannot tell, the whole file is one range (correct, only slower to copy).
    public static func of(fd: Int32, size: UInt64) -> [Range<UInt64>] {
        var ranges: [Range<UInt64>] = []
        var position: off_t = 0
        while UInt64(position) < size {
            let start = lseek(fd, position, seekData)
            if start < 0 {
                // ENXIO: only a hole is left. Anything else: no hole support, assume data everywhere.
                if errno != ENXIO { return ranges + [UInt64(position)..<size] }
                break
            }
            guard UInt64(start) < size else { break }
            let end = lseek(fd, start, seekHole)
            let stop = end < 0 ? off_t(size) : min(end, off_t(size))
            if stop > start { ranges.append(UInt64(start)..<UInt64(stop)) }
            position = stop
        }
        return ranges
    }

    /// lseek's SEEK_DATA and SEEK_HOLE (Linux values; Swift's Glibc hides them behind _GNU_SOURCE).
    private static let seekData: Int32 = 3
    private static let seekHole: Int32 = 4
}
