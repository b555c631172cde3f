import Foundation
import UnderstudyProtocol

/// The redo journal that makes applying a checkpoint atomic.
///
/// Ordering rules (the whole point of this type):
/// 1. `invalidate` first: a journal that is being rewritten must never look complete.
/// 2. The decoded pages and device state are written into the body.
/// 3. The header, then the trailer, are written last; only a journal whose header and trailer
///    both carry the same epoch and base generation, and whose body matches the trailer's
///    checksum, is complete.
/// 4. The replica memory is touched only after the journal is complete, and the journal is only
///    rewritten after the state that it led to was published.
/// 5. The store syncs the sealed journal before it acknowledges the epoch. A power cut may keep
///    any part of unsynced writes (the header without the body): the checksum makes such a
///    journal incomplete, so one sync after the seal is enough.
/// A process killed or a power cut at any point therefore leaves either an incomplete journal
/// (the old state stands) or a complete one that recovery applies again (the new state). Applying is idempotent:
/// the journal holds whole decoded pages, not deltas.
///
/// Layout: header (magic "USJRNL03", base generation, epoch, page count, device-state length,
/// disk-section length; 64 bytes), page indices (u64 each), pages (page-aligned), device state,
/// disk section (the epoch's disk changes, decoded: kind u8, offset u64, length u64, then the bytes
/// of a write), trailer (magic, base generation, epoch, checksum of the body: everything between
/// header and trailer). The file may be longer than the layout (see `JournalSizePolicy`).
/// The trailer magic names the checksum: "USJEND04" is XXH3-128 (what this version writes: it
/// catches torn writes at a fraction of SHA-256's cost per byte), "USJEND03" is SHA-256 (a journal
/// sealed by the previous version, still recovered).
final class EpochJournal {
    static let headerMagic = Array("USJRNL03".utf8)
    static let trailerMagic = Array("USJEND04".utf8)
    static let sha256TrailerMagic = Array("USJEND03".utf8)
    static let headerSize = 64
    /// The size of the trailer this version writes (an XXH3-128 checksum).
    static let trailerSize = 24 + 16

    struct Layout {
        let pageCount: Int
        let pageSize: Int
        let deviceStateLength: Int
        let diskLength: Int

        var indicesOffset: Int { EpochJournal.headerSize }
        var pagesOffset: Int { (indicesOffset + 8 * pageCount + pageSize - 1) / pageSize * pageSize }
        var deviceStateOffset: Int { pagesOffset + pageCount * pageSize }
        var diskOffset: Int { deviceStateOffset + deviceStateLength }
        var trailerOffset: Int { diskOffset + diskLength }
        var totalSize: Int { trailerOffset + EpochJournal.trailerSize }
    }

    struct Header {
        var baseGeneration: UInt64
        var epoch: UInt64
        var layout: Layout
    }

    let file: MappedFile
    let pageSize: Int
    private var sizePolicy: JournalSizePolicy

    init(path: String, pageSize: Int, sizePolicy: JournalSizePolicy = JournalSizePolicy()) throws(ReplicaError) {
        // An existing journal keeps its size and content, so that recovery can read it.
        file = try MappedFile(path: path, size: nil)
        self.pageSize = pageSize
        self.sizePolicy = sizePolicy
    }

    /// Step 1: make the journal incomplete, then make room for `header` (the file's size follows
    /// `sizePolicy`: it grows at once and shrinks back only after a long run of smaller epochs).
    func begin(_ header: Header) throws(ReplicaError) {
        if file.size >= EpochJournal.headerSize { file.bytes.storeBytes(of: 0, toByteOffset: 0, as: UInt64.self) }
        if let size = sizePolicy.size(forEpochNeeding: header.layout.totalSize, current: file.size) { try file.resize(to: size) }
        // The trailer area may hold an older journal's trailer: clear it before writing the body.
        memset(file.bytes.baseAddress! + header.layout.trailerOffset, 0, EpochJournal.trailerSize)
    }

    func pageIndexSlot(_ slot: Int, layout: Layout) -> UnsafeMutableRawPointer {
        file.bytes.baseAddress! + layout.indicesOffset + 8 * slot
    }

    func page(_ slot: Int, layout: Layout) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: file.bytes.baseAddress! + layout.pagesOffset + slot * pageSize, count: pageSize)
    }

    func deviceState(layout: Layout) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: file.bytes.baseAddress! + layout.deviceStateOffset, count: layout.deviceStateLength)
    }

    func diskSection(layout: Layout) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: file.bytes.baseAddress! + layout.diskOffset, count: layout.diskLength)
    }

    /// Step 3: header then trailer; from here the journal is complete.
    func seal(_ header: Header) {
        var w = WireWriter(capacity: EpochJournal.headerSize)
        w.write(bytes: EpochJournal.headerMagic)
        w.write(header.baseGeneration)
        w.write(header.epoch)
        w.write(UInt64(header.layout.pageCount))
        w.write(UInt64(header.layout.deviceStateLength))
        w.write(UInt64(header.layout.diskLength))
        // Body fields first, magic last: a kill in between leaves no valid header.
        let base = file.bytes.baseAddress!
        w.bytes.withUnsafeBytes { (base + 8).copyMemory(from: $0.baseAddress! + 8, byteCount: $0.count - 8) }
        w.bytes.withUnsafeBytes { base.copyMemory(from: $0.baseAddress!, byteCount: 8) }
        var t = WireWriter(capacity: EpochJournal.trailerSize)
        t.write(bytes: EpochJournal.trailerMagic)
        t.write(header.baseGeneration)
        t.write(header.epoch)
        t.write(bytes: bodyChecksum(layout: header.layout))
        t.bytes.withUnsafeBytes { (base + header.layout.trailerOffset).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }

    /// The journal's header when it is complete, nil otherwise.
    func completeHeader() -> Header? {
        guard file.size >= EpochJournal.headerSize + EpochJournal.trailerSize else { return nil }
        let bytes = Array(UnsafeRawBufferPointer(rebasing: file.bytes[0..<EpochJournal.headerSize]))
        var r = WireReader(bytes, context: "journal header")
        guard let magic = try? r.readBytes(8), magic == EpochJournal.headerMagic,
              let generation = try? r.readUInt64(), let epoch = try? r.readUInt64(),
              let pages = try? r.readUInt64(), let device = try? r.readUInt64(), let disk = try? r.readUInt64(),
              pages < UInt64(Int32.max), device < UInt64(Int32.max), disk < UInt64(Int.max / 4) else { return nil }
        let layout = Layout(pageCount: Int(pages), pageSize: pageSize, deviceStateLength: Int(device), diskLength: Int(disk))
        guard layout.trailerOffset + 8 <= file.size else { return nil }
        let trailerMagic = Array(UnsafeRawBufferPointer(rebasing: file.bytes[layout.trailerOffset..<(layout.trailerOffset + 8)]))
        let sha256 = trailerMagic == EpochJournal.sha256TrailerMagic
        guard trailerMagic == EpochJournal.trailerMagic || sha256 else { return nil }
        let checksumSize = sha256 ? 32 : 16
        guard layout.trailerOffset + 24 + checksumSize <= file.size else { return nil }
        let trailer = Array(UnsafeRawBufferPointer(rebasing: file.bytes[(layout.trailerOffset + 8)..<(layout.trailerOffset + 24 + checksumSize)]))
        var t = WireReader(trailer, context: "journal trailer")
        guard (try? t.readUInt64()) == generation, (try? t.readUInt64()) == epoch,
              (try? t.readBytes(checksumSize)) == bodyChecksum(layout: layout, sha256: sha256) else { return nil }
        return Header(baseGeneration: generation, epoch: epoch, layout: layout)
    }

    /// The checksum of the body (page indices, pages, device state and disk section): XXH3-128,
    /// or SHA-256 for a journal sealed by the previous version.
    func bodyChecksum(layout: Layout, sha256: Bool = false) -> [UInt8] {
        let body = UnsafeRawBufferPointer(rebasing: file.bytes[layout.indicesOffset..<layout.trailerOffset])
        if sha256 { return EpochDigest.sha256(body) }
        return EpochDigest.xxh3(body)
    }

    func pageIndex(_ slot: Int, layout: Layout) -> UInt64 {
        UInt64(bigEndian: pageIndexSlot(slot, layout: layout).loadUnaligned(as: UInt64.self))
    }
}

/// The journal's disk section: an epoch's disk changes, decoded, in the order the guest made them.
/// Record: kind u8 (0 bytes, 1 zeroes, 2 flush), offset u64, length u64, then `length` bytes for kind 0.
extension EpochJournal {
    enum DiskRecord {
        case write(offset: UInt64, bytes: UnsafeRawBufferPointer)
        case zeroes(offset: UInt64, length: UInt64)
        case flush
    }

    static let diskRecordHeaderSize = 17

    /// Bytes `change` takes in the disk section.
    static func diskRecordSize(_ change: DiskChange) -> Int {
        if case .write(_, .bytes(let bytes)) = change { diskRecordHeaderSize + bytes.count } else { diskRecordHeaderSize }
    }

    /// Writes `change` at `position` of `section`; returns the position after it.
    static func writeDiskRecord(_ change: DiskChange, into section: UnsafeMutableRawBufferPointer, at position: Int) -> Int {
        var w = WireWriter(capacity: diskRecordHeaderSize)
        var payload: [UInt8] = []
        switch change {
        case .write(let offset, .bytes(let bytes)):
            w.write(UInt8(0)); w.write(offset); w.write(UInt64(bytes.count))
            payload = bytes
        case .write(let offset, .zeroes(let length)):
            w.write(UInt8(1)); w.write(offset); w.write(UInt64(length))
        case .flush:
            w.write(UInt8(2)); w.write(UInt64(0)); w.write(UInt64(0))
        }
        let base = section.baseAddress! + position
        w.bytes.withUnsafeBytes { base.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        payload.withUnsafeBytes { if $0.count > 0 { (base + diskRecordHeaderSize).copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
        return position + diskRecordHeaderSize + payload.count
    }

    /// Visits the records of a disk section. Recovery reads it back from storage, so every length
    /// is checked against the section before it is used.
    static func forEachDiskRecord(in section: UnsafeRawBufferPointer, _ body: (DiskRecord) throws(ReplicaError) -> Void) throws(ReplicaError) {
        var position = 0
        while position < section.count {
            guard section.count - position >= diskRecordHeaderSize else { throw .corrupt("journal disk section ends inside a record header") }
            let header = Array(UnsafeRawBufferPointer(rebasing: section[position..<(position + diskRecordHeaderSize)]))
            var r = WireReader(header, context: "journal disk record")
            guard let kind = try? r.readUInt8(), let offset = try? r.readUInt64(), let length = try? r.readUInt64() else {
                throw .corrupt("journal disk record header unreadable")
            }
            position += diskRecordHeaderSize
            switch kind {
            case 0:
                guard length <= UInt64(section.count - position) else { throw .corrupt("journal disk record of \(length) bytes overruns the section") }
                try body(.write(offset: offset, bytes: UnsafeRawBufferPointer(rebasing: section[position..<(position + Int(length))])))
                position += Int(length)
            case 1: try body(.zeroes(offset: offset, length: length))
            case 2: try body(.flush)
            default: throw .corrupt("journal disk record of unknown kind \(kind)")
            }
        }
    }
}
