import CUnderstudyShims
#if canImport(Glibc)
import Glibc
#endif

/// Point-in-time copies of image files (the replica's disk and memory image, for a failover
/// drill), made as cheaply as the file system allows, because the source must not change while
/// they are made and whoever writes it is kept waiting meanwhile.
public enum ImageCopy {
    /// How a copy was made.
    public enum Method: String, Sendable, Codable {
        /// The file system shares the extents copy-on-write (FICLONE: btrfs, XFS with reflink):
        /// constant time, whatever the size.
        case reflink
        /// Only the source's data ranges were read, and only chunks holding something other than
        /// zeroes written: the copy is sparse, and takes as long as reading the data.
        case sparse
    }

    /// Copies `source` (a regular file or block device) into the new file `destination`: a reflink
    /// where the file system can make one, a sparse copy otherwise. `destination` must not exist;
    /// nothing is left there when the copy fails.
    public static func copy(from source: String, to destination: String) throws(DiskError) -> Method {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw errno == ENOENT ? .missingImage(path: source) : .io(operation: "open", path: source, errno: errno) }
        defer { close(input) }
        let output = open(destination, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard output >= 0 else { throw .io(operation: "create", path: destination, errno: errno) }
        defer { close(output) }
        // Any failure (EOPNOTSUPP on ext4 and tmpfs, EXDEV across file systems, ENOTTY for a block
        // device) only means no reflink here: the data is copied instead.
        if ioctl(output, ficlone, input) == 0 { return .reflink }
        do throws(DiskError) {
            let image = try DiskImage(path: source, readOnly: true)
            guard ftruncate(output, off_t(image.size)) == 0 else {
                throw .io(operation: "size to \(image.size) bytes", path: destination, errno: errno)
            }
            // The new file reads as zeroes already: writing zeroes would only allocate space.
            try copy(image.dataRanges(), of: image, to: DiskImage(path: destination, readOnly: false), skippingZeroes: true)
        } catch {
            unlink(destination)
            throw error
        }
        return .sparse
    }

    /// Copies the byte ranges `ranges` of the image at `source` into the same places of the
    /// image at `destination` (both exist, with the same size): brings a copy up to date with
    /// the parts of its source written since it was made.
    public static func update(_ ranges: [Range<UInt64>], from source: String, to destination: String) throws(DiskError) {
        try copy(ranges, of: DiskImage(path: source, readOnly: true), to: DiskImage(path: destination, readOnly: false), skippingZeroes: false)
    }

    private static func copy(_ ranges: [Range<UInt64>], of image: DiskImage, to copy: DiskImage, skippingZeroes: Bool) throws(DiskError) {
        let chunk = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buffer.deallocate() }
        for range in ranges {
            var offset = range.lowerBound
            while offset < range.upperBound {
                let count = Int(min(UInt64(chunk), range.upperBound - offset))
                let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count])
                try image.read(into: piece, at: offset)
                // us_is_zero takes multiples of 64 bytes; a shorter tail is simply written.
                if !skippingZeroes || count % 64 != 0 || us_is_zero(piece.baseAddress, count) == 0 {
                    try copy.write(UnsafeRawBufferPointer(piece), at: offset)
                }
                offset += UInt64(count)
            }
        }
    }

    /// FICLONE, _IOW(0x94, 9, int) (linux/fs.h; not exported to Swift).
    private static let ficlone: UInt = 0x4004_9409
}
