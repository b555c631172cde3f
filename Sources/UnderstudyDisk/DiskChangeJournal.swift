import Foundation
import UnderstudyProtocol
#if canImport(Glibc)
import Glibc
#endif

/// An append-only local file of disk changes, in order, with a size limit: where the primary
/// keeps the guest's disk writes while its backup cannot be reached, so that one catch-up
/// checkpoint can replay them instead of a full resynchronisation.
///
/// Positions are byte offsets in the file; a caller remembers the range it appended and reads it
/// back in the same order. The file is private scratch (mode 0600), removed by `remove()`; it is
/// not made durable, because it only matters while this process runs the VM.
///
/// Record layout: kind u8 (0 bytes written, 1 range zeroed, 2 flush), offset u64, length u32,
/// then `length` bytes for kind 0.
public final class DiskChangeJournal: @unchecked Sendable {
    public enum JournalError: Error, Sendable, Equatable, CustomStringConvertible {
        /// Appending would pass the limit: the changes cannot all be kept.
        case full(limit: Int)
        case io(operation: String, path: String, errno: Int32)
        case corrupt(path: String, position: UInt64)

        public var description: String {
            switch self {
            case .full(let limit): "the catch-up journal is full (limit \(limit >> 20) MiB)"
            case .io(let operation, let path, let code): "\(operation) \(path) failed: \(String(cString: strerror(code))) (errno \(code))"
            case .corrupt(let path, let position): "\(path) has an unreadable record at byte \(position)"
            }
        }
    }

    public let path: String
    /// Bytes the file may hold at most.
    public let limit: Int
    private let fd: Int32
    /// Bytes in the file; the next record goes here.
    public private(set) var end: UInt64 = 0
    static let headerSize = 13

    /// Creates (or truncates) the journal at `path`.
    public init(path: String, limit: Int) throws(JournalError) {
        self.path = path
        self.limit = limit
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .io(operation: "create", path: path, errno: errno) }
    }

    deinit { close(fd) }

    /// Appends `changes` in order; returns the range they occupy. Nothing is appended when they
    /// would pass the limit (`.full`) or the write fails.
    @discardableResult
    public func append(_ changes: [DiskChange]) throws(JournalError) -> Range<UInt64> {
        let start = end
        var w = WireWriter(capacity: changes.reduce(0) { $0 + Self.headerSize + $1.wireCapacity })
        for change in changes {
            switch change {
            case .write(let offset, .bytes(let bytes)):
                w.write(UInt8(0)); w.write(offset); w.write(UInt32(bytes.count)); w.write(bytes: bytes)
            case .write(let offset, .zeroes(let length)):
                w.write(UInt8(1)); w.write(offset); w.write(UInt32(length))
            case .flush:
                w.write(UInt8(2)); w.write(UInt64(0)); w.write(UInt32(0))
            }
        }
        guard Int(end) + w.bytes.count <= limit else { throw .full(limit: limit) }
        let written = w.bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(start)) }
        guard written == w.bytes.count else {
            // A short write (disk full) leaves bytes past `end` that no range names: harmless.
            throw .io(operation: "write", path: path, errno: written < 0 ? errno : ENOSPC)
        }
        end += UInt64(w.bytes.count)
        return start..<end
    }

    /// Reads the changes in `range` back in order, about `batchBytes` of data at a time.
    public func read(_ range: Range<UInt64>, batchBytes: Int = 8 << 20, _ body: ([DiskChange]) throws -> Void) throws {
        var position = range.lowerBound
        var batch: [DiskChange] = []
        var bytes = 0
        while position < range.upperBound {
            let header = try readBytes(at: position, count: Self.headerSize)
            var r = WireReader(header, context: path)
            let kind = try r.readUInt8(), offset = try r.readUInt64(), length = Int(try r.readUInt32())
            position += UInt64(Self.headerSize)
            switch kind {
            case 0:
                batch.append(.write(offset: offset, data: .bytes(try readBytes(at: position, count: length))))
                position += UInt64(length)
                bytes += length
            case 1: batch.append(.write(offset: offset, data: .zeroes(length: length)))
            case 2: batch.append(.flush)
            default: throw JournalError.corrupt(path: path, position: position - UInt64(Self.headerSize))
            }
            if bytes >= batchBytes {
                try body(batch)
                batch.removeAll(keepingCapacity: true)
                bytes = 0
            }
        }
        guard position == range.upperBound else { throw JournalError.corrupt(path: path, position: range.upperBound) }
        if !batch.isEmpty { try body(batch) }
    }

    /// Empties the journal (every range read from it so far is forgotten).
    public func reset() throws(JournalError) {
        guard ftruncate(fd, 0) == 0 else { throw .io(operation: "truncate", path: path, errno: errno) }
        end = 0
    }

    /// Deletes the file.
    public func remove() { unlink(path) }

    private func readBytes(at position: UInt64, count: Int) throws(JournalError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let got = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(position)) }
        guard got == count else {
            if got < 0 { throw .io(operation: "read", path: path, errno: errno) }
            throw .corrupt(path: path, position: position)
        }
        return bytes
    }
}
