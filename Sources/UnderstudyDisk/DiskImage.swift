import CUnderstudyShims
import UnderstudySystem
#if canImport(Glibc)
import Glibc
#endif

/// A raw disk image (a regular file or a block device) opened for serving: positioned reads and
/// writes that complete whole or throw, zeroing a range cheaply, and durability on request.
///
/// Every call uses positioned I/O, which never moves a shared file offset, so several threads
/// may use one image at once.
public final class DiskImage: Sendable {
    /// The file or device, as given.
    public let path: String
    /// Bytes in the image when it was opened; every access must stay below it.
    public let size: UInt64
    /// Opened without write access: every change fails with EBADF.
    public let isReadOnly: Bool
    private let fd: Int32

    /// Opens an existing image. Its current size is the disk's size: it is never grown or shrunk.
    public init(path: String, readOnly: Bool) throws(DiskError) {
        let fd = open(path, (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC)
        guard fd >= 0 else {
            throw errno == ENOENT ? .missingImage(path: path) : .io(operation: "open", path: path, errno: errno)
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let code = errno
            close(fd)
            throw .io(operation: "fstat", path: path, errno: code)
        }
        let kind = info.st_mode & S_IFMT
        guard kind == S_IFREG || kind == S_IFBLK else {
            close(fd)
            throw .invalidImage(path: path, reason: "it is neither a regular file nor a block device")
        }
        // lseek rather than st_size: a block device reports its size only this way.
        let end = lseek(fd, 0, SEEK_END)
        guard end > 0 else {
            let code = errno
            close(fd)
            if end < 0 { throw .io(operation: "lseek", path: path, errno: code) }
            throw .invalidImage(path: path, reason: "it is empty; give it a size first (qemu-img resize -f raw \(path) SIZE)")
        }
        self.path = path
        self.fd = fd
        self.size = UInt64(end)
        self.isReadOnly = readOnly
    }

    deinit { close(fd) }

    /// Fills `buffer` with the bytes at `offset`.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(DiskError) {
        try checkRange(offset: offset, length: UInt64(buffer.count), operation: "read", beyondEnd: EINVAL)
        var done = 0
        while done < buffer.count {
            // In bounds: done < buffer.count, so baseAddress exists and the rest of the buffer follows it.
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n > 0 {
                done += n
            } else if n < 0 && errno == EINTR {
                continue
            } else if n == 0 {
                // The file ended inside the range it had when opened: someone truncated it under us.
                throw .invalidImage(path: path, reason: "it ends before offset \(offset + UInt64(done)); it was truncated while being served")
            } else {
                throw .io(operation: "read", path: path, errno: errno)
            }
        }
    }

    /// Writes all of `bytes` at `offset`.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(DiskError) {
        try checkRange(offset: offset, length: UInt64(bytes.count), operation: "write", beyondEnd: ENOSPC)
        var done = 0
        while done < bytes.count {
            // In bounds: done < bytes.count, so baseAddress exists and the rest of the buffer follows it.
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if n > 0 {
                done += n
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                // pwrite returns 0 only for a zero-length request; treat it as a full disk rather than loop.
                throw .io(operation: "write", path: path, errno: n == 0 ? ENOSPC : errno)
            }
        }
    }

    /// Makes `length` bytes at `offset` read as zeroes. With `punchHole` the range is deallocated
    /// (the file stays sparse); without it the blocks stay allocated, so later writes there cannot
    /// fail for lack of space. Where the file system cannot do either, zeroes are written.
    public func zero(offset: UInt64, length: UInt64, punchHole: Bool) throws(DiskError) {
        try checkRange(offset: offset, length: length, operation: "zero", beyondEnd: ENOSPC)
        guard length > 0 else { return }
        for punch in punchHole ? [true, false] : [false] {
            if us_zero_file_range(fd, Int64(offset), Int64(length), punch ? 1 : 0) == 0 { return }
            let code = errno
            // Unsupported here (tmpfs has no zero-range, some file systems no holes): try the next way.
            guard code == EOPNOTSUPP || code == ENOSYS else {
                throw .io(operation: punch ? "punch hole" : "zero range", path: path, errno: code)
            }
        }
        let chunk = [UInt8](repeating: 0, count: Int(min(length, 1 << 20)))
        var done: UInt64 = 0
        while done < length {
            let count = Int(min(UInt64(chunk.count), length - done))
            // withUnsafeBytes does not carry typed errors through; Result does.
            try chunk.withUnsafeBytes { raw in
                Result { () throws(DiskError) in try write(UnsafeRawBufferPointer(rebasing: raw[0..<count]), at: offset + done) }
            }.get()
            done += UInt64(count)
        }
    }

    /// The ranges that may hold data, in order, skipping the file's holes (which read as zeroes);
    /// where the file system cannot tell, the whole image is one range.
    public func dataRanges() -> [Range<UInt64>] { FileDataRanges.of(fd: fd, size: size) }

    /// Makes every completed write durable (fdatasync).
    public func synchronize() throws(DiskError) {
        while fdatasync(fd) != 0 {
            guard errno == EINTR else { throw .io(operation: "fdatasync", path: path, errno: errno) }
        }
    }

    private func checkRange(offset: UInt64, length: UInt64, operation: String, beyondEnd code: Int32) throws(DiskError) {
        guard offset <= size, length <= size - offset else {
            throw .io(operation: "\(operation) of \(length) bytes at offset \(offset), beyond the image's \(size) bytes,", path: path, errno: code)
        }
    }
}
