#if canImport(Glibc)
import Glibc
#endif

/// The guest's disks as replication sees them: one address space in which disk `i` starts where
/// disk `i - 1` ends (`bases`). Disk writes, the initial sync, the catch-up journal and the
/// backup's epoch journal all use offsets in this space, so the writes of every disk of an epoch
/// travel and apply in one order, as one atomic unit, exactly as those of a single disk do.
///
/// Both nodes of a pair must lay the disks out alike: `VMIdentity.diskSizes` carries the sizes in
/// order, and the handshake compares them.
public final class DiskSet: Sendable {
    public let images: [DiskImage]
    /// Where each image starts in the combined space.
    public let bases: [UInt64]
    /// The sum of the images' sizes.
    public let size: UInt64

    public init(_ images: [DiskImage]) {
        self.images = images
        var bases: [UInt64] = []
        var end: UInt64 = 0
        for image in images {
            bases.append(end)
            end += image.size
        }
        self.bases = bases
        size = end
    }

    /// Opens the images at `paths`, in order.
    public convenience init(paths: [String], readOnly: Bool) throws(DiskError) {
        var images: [DiskImage] = []
        for path in paths { images.append(try DiskImage(path: path, readOnly: readOnly)) }
        self.init(images)
    }

    public var sizes: [UInt64] { images.map(\.size) }
    public var paths: [String] { images.map(\.path) }

    /// One piece of a combined-space range: which image, where in it, and where in the range.
    struct Piece: Equatable {
        let image: Int
        let offset: UInt64
        let length: UInt64
        let rangeOffset: UInt64
    }

    /// Cuts `length` bytes at combined `offset` at the images' boundaries; throws when the range
    /// leaves the combined space (the same errors as one image beyond its end).
    func pieces(offset: UInt64, length: UInt64, operation: String, beyondEnd code: Int32) throws(DiskError) -> [Piece] {
        guard offset <= size, length <= size - offset else {
            throw .io(operation: "\(operation) of \(length) bytes at offset \(offset), beyond the disks' \(size) bytes,",
                      path: paths.joined(separator: " + "), errno: code)
        }
        var pieces: [Piece] = []
        var position = offset
        let end = offset + length
        for (index, image) in images.enumerated() where position < end && position < bases[index] + image.size {
            let count = min(end, bases[index] + image.size) - position
            pieces.append(Piece(image: index, offset: position - bases[index], length: count, rangeOffset: position - offset))
            position += count
        }
        return pieces
    }

    /// Fills `buffer` with the bytes at combined `offset`.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(DiskError) {
        for piece in try pieces(offset: offset, length: UInt64(buffer.count), operation: "read", beyondEnd: EINVAL) {
            // In bounds: the pieces tile [0, buffer.count).
            try images[piece.image].read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[Int(piece.rangeOffset)..<Int(piece.rangeOffset + piece.length)]),
                                         at: piece.offset)
        }
    }

    /// Writes all of `bytes` at combined `offset`.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(DiskError) {
        for piece in try pieces(offset: offset, length: UInt64(bytes.count), operation: "write", beyondEnd: ENOSPC) {
            try images[piece.image].write(UnsafeRawBufferPointer(rebasing: bytes[Int(piece.rangeOffset)..<Int(piece.rangeOffset + piece.length)]),
                                          at: piece.offset)
        }
    }

    /// Makes the range read as zeroes (see `DiskImage.zero`).
    public func zero(offset: UInt64, length: UInt64, punchHole: Bool) throws(DiskError) {
        for piece in try pieces(offset: offset, length: length, operation: "zero", beyondEnd: ENOSPC) {
            try images[piece.image].zero(offset: piece.offset, length: piece.length, punchHole: punchHole)
        }
    }

    /// The ranges that may hold data, in combined offsets and in order.
    public func dataRanges() -> [Range<UInt64>] {
        zip(images, bases).flatMap { image, base in image.dataRanges().map { ($0.lowerBound + base)..<($0.upperBound + base) } }
    }

    /// Makes every completed write of every image durable.
    public func synchronize() throws(DiskError) {
        for image in images { try image.synchronize() }
    }
}
