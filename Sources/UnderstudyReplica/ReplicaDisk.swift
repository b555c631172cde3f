import CUnderstudyShims
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import UnderstudyProtocol

/// The backup's copy of the guest disk: a raw image file of the VM's disk size. Written only
/// with the changes of committed epochs (and the initial sync), so after failover it is exactly
/// the disk of the last committed checkpoint.
final class ReplicaDisk: @unchecked Sendable {
    let path: String
    let size: UInt64
    private let fd: Int32

    /// Opens `path`, which must hold `size` bytes (the operator provisions the backup's disk with
    /// the primary's size, as for any replicated block device), or creates it with that size (a new
    /// file reads as zeroes and takes no space). A file of another size is refused, never resized.
    init(path: String, size: UInt64) throws(ReplicaError) {
        self.path = path
        self.size = size
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .io(operation: "open", path: path, errno: errno) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let code = errno
            close(fd)
            throw .io(operation: "stat", path: path, errno: code)
        }
        if info.st_size == 0 && size > 0 {
            guard ftruncate(fd, off_t(size)) == 0 else {
                let code = errno
                close(fd)
                throw .io(operation: "size to \(size) bytes", path: path, errno: code)
            }
        } else if UInt64(info.st_size) != size {
            close(fd)
            throw .identityMismatch("the replica disk \(path) has \(info.st_size) bytes, the VM's disk has \(size)")
        }
    }

    deinit { close(fd) }

    /// Checks that a range lies inside the disk (the primary's disk has the same size): the
    /// content may come from a peer or from a journal read back after a crash.
    func validate(offset: UInt64, length: UInt64) throws(ReplicaError) {
        let (end, overflow) = offset.addingReportingOverflow(length)
        guard !overflow, end <= size else {
            throw .invalidContent(.malformed("disk change of \(length) bytes at \(offset) ends beyond the \(size)-byte disk"))
        }
    }

    func validate(_ change: DiskChange) throws(ReplicaError) {
        if case .write(let offset, let data) = change { try validate(offset: offset, length: UInt64(data.length)) }
    }

    func apply(_ change: DiskChange) throws(ReplicaError) {
        switch change {
        case .write(let offset, .bytes(let bytes)):
            let result = bytes.withUnsafeBytes { buffer in Result { () throws(ReplicaError) in try write(buffer, at: offset) } }
            try result.get()
        case .write(let offset, .zeroes(let length)): try zero(offset: offset, length: UInt64(length))
        case .flush: try flush()
        }
    }

    func apply(_ record: EpochJournal.DiskRecord) throws(ReplicaError) {
        switch record {
        case .write(let offset, let bytes): try write(bytes, at: offset)
        case .zeroes(let offset, let length): try zero(offset: offset, length: length)
        case .flush: try flush()
        }
    }

    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(ReplicaError) {
        try validate(offset: offset, length: UInt64(buffer.count))
        var done = 0
        while done < buffer.count {
            // The buffer is a live, readable range of `buffer.count` bytes; `done` stays below it.
            let written = pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else {
                throw .io(operation: "write \(buffer.count) bytes at \(offset) of", path: path, errno: written < 0 ? errno : ENOSPC)
            }
            done += written
        }
    }

    /// Zeroes a range; a hole where the filesystem can punch one, written zeroes otherwise.
    func zero(offset: UInt64, length: UInt64) throws(ReplicaError) {
        try validate(offset: offset, length: length)
        if us_zero_file_range(fd, Int64(offset), Int64(length), 1) == 0 { return }
        guard errno == EOPNOTSUPP || errno == ENOSYS else {
            throw .io(operation: "zero \(length) bytes at \(offset) of", path: path, errno: errno)
        }
        let chunk = [UInt8](repeating: 0, count: 1 << 20)
        var done: UInt64 = 0
        while done < length {
            let count = Int(min(UInt64(chunk.count), length - done))
            let result = chunk.withUnsafeBytes { buffer in
                Result { () throws(ReplicaError) in try write(UnsafeRawBufferPointer(rebasing: buffer[0..<count]), at: offset + done) }
            }
            try result.get()
            done += UInt64(count)
        }
    }

    func flush() throws(ReplicaError) {
        guard fdatasync(fd) == 0 else { throw .io(operation: "flush", path: path, errno: errno) }
    }

    /// Replaces the whole content with zeroes (the start of a full resynchronisation).
    func reset() throws(ReplicaError) {
        guard ftruncate(fd, 0) == 0, ftruncate(fd, off_t(size)) == 0 else { throw .io(operation: "reset", path: path, errno: errno) }
    }
}
