import Foundation
#if canImport(Glibc)
import Glibc
#endif
import UnderstudyDisk
import UnderstudyProtocol

/// The backup's copy of the guest's disks: one raw image per disk, of that disk's size, addressed
/// as one space (`DiskSet`). Written only with the initial sync and the changes of committed
/// epochs, so after failover they are exactly the disks of the last committed checkpoint.
final class ReplicaDisk: @unchecked Sendable {
    let image: DiskSet
    var paths: [String] { image.paths }
    var size: UInt64 { image.size }

    /// Opens each of `paths`, which must hold the matching `sizes` bytes (the operator provisions
    /// the backup's disks with the primary's sizes, as for any replicated block device), or creates
    /// it with that size (a new file reads as zeroes and takes no space). A file of another size is
    /// refused, never resized.
    init(paths: [String], sizes: [UInt64]) throws(ReplicaError) {
        precondition(paths.count == sizes.count, "one path per disk")
        var images: [DiskImage] = []
        for (path, size) in zip(paths, sizes) { images.append(try Self.openImage(path: path, size: size)) }
        image = DiskSet(images)
    }

    private static func openImage(path: String, size: UInt64) throws(ReplicaError) -> DiskImage {
        let image: DiskImage
        var info = stat()
        if stat(path, &info) != 0 || info.st_size == 0 {
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw .io(operation: "create", path: path, errno: errno) }
            defer { close(fd) }
            guard ftruncate(fd, off_t(size)) == 0 else { throw .io(operation: "size to \(size) bytes", path: path, errno: errno) }
        }
        do throws(DiskError) {
            image = try DiskImage(path: path, readOnly: false)
        } catch {
            throw .disk(error)
        }
        guard image.size == size else {
            throw .identityMismatch("the replica disk \(path) has \(image.size) bytes, the VM's disk has \(size)")
        }
        return image
    }

    /// Checks that a range lies inside the disk: the content may come from a peer or from a
    /// journal read back after a crash.
    func validate(offset: UInt64, length: UInt64) throws(ReplicaError) {
        let (end, overflow) = offset.addingReportingOverflow(length)
        guard !overflow, end <= size else {
            throw .invalidContent(.malformed("disk change of \(length) bytes at \(offset) ends beyond the disks' \(size) bytes"))
        }
    }

    func validate(_ change: DiskChange) throws(ReplicaError) {
        if case .write(let offset, let data) = change { try validate(offset: offset, length: UInt64(data.length)) }
    }

    func apply(_ change: DiskChange) throws(ReplicaError) {
        switch change {
        case .write(let offset, .bytes(let bytes)):
            try bytes.withUnsafeBytes { buffer in Result { () throws(ReplicaError) in try apply(.write(offset: offset, bytes: buffer)) } }.get()
        case .write(let offset, .zeroes(let length)): try apply(.zeroes(offset: offset, length: UInt64(length)))
        case .flush: try apply(EpochJournal.DiskRecord.flush)
        }
    }

    func apply(_ record: EpochJournal.DiskRecord) throws(ReplicaError) {
        switch record {
        case .write(let offset, let bytes): try validate(offset: offset, length: UInt64(bytes.count))
        case .zeroes(let offset, let length): try validate(offset: offset, length: length)
        case .flush: break
        }
        do throws(DiskError) {
            switch record {
            case .write(let offset, let bytes): try image.write(bytes, at: offset)
            case .zeroes(let offset, let length): try image.zero(offset: offset, length: length, punchHole: true)
            case .flush: try image.synchronize()
            }
        } catch {
            throw .disk(error)
        }
    }

    func flush() throws(ReplicaError) { try apply(EpochJournal.DiskRecord.flush) }

    /// Replaces the whole content with zeroes (the start of a full resynchronisation).
    func reset() throws(ReplicaError) { try apply(.zeroes(offset: 0, length: size)) }
}
