import Foundation
import UnderstudyProtocol
@testable import UnderstudyReplica

extension FuzzTarget {
    /// The replica's epoch journal as recovery reads it back from storage: the header and trailer
    /// checked, then the page indices, the device state and the disk records of a complete one.
    /// After an even first byte the input is the whole file. After an odd one it fills the body of
    /// a journal that the journal's own code then seals (its checksum would turn away nearly every
    /// mutation otherwise); such a journal must read back complete, with the header it was sealed with.
    static let journal = FuzzTarget(name: "journal", run: { bytes in
        guard let mode = bytes.first else { return }
        let rest = Array(bytes.dropFirst())
        let path = JournalFile.path
        if mode & 1 == 0 {
            JournalFile.write(rest)
            guard let journal = try? EpochJournal(path: path, pageSize: JournalFile.pageSize) else { return }
            if let header = journal.completeHeader() { JournalFile.readBody(of: journal, header) }
        } else {
            JournalFile.write([])
            guard let journal = try? EpochJournal(path: path, pageSize: JournalFile.pageSize) else { return }
            let header = JournalFile.seal(journal, body: rest)
            guard let read = journal.completeHeader() else { preconditionFailure("a sealed journal reads back incomplete") }
            precondition(read.epoch == header.epoch && read.baseGeneration == header.baseGeneration
                && read.layout.pageCount == header.layout.pageCount && read.layout.deviceStateLength == header.layout.deviceStateLength
                && read.layout.diskLength == header.layout.diskLength, "a sealed journal reads back with another header")
            JournalFile.readBody(of: journal, read)
        }
    }, seeds: {
        JournalFile.write([])
        let journal = try! EpochJournal(path: JournalFile.path, pageSize: JournalFile.pageSize)
        var disk: [UInt8] = []
        let changes: [DiskChange] = [.write(offset: 512, data: .bytes(Array("sector".utf8))), .write(offset: 4096, data: .zeroes(length: 8192)), .flush]
        for change in changes {
            let start = disk.count
            disk += [UInt8](repeating: 0, count: EpochJournal.diskRecordSize(change))
            _ = disk.withUnsafeMutableBytes { EpochJournal.writeDiskRecord(change, into: $0, at: start) }
        }
        // Two pages (indices 3 and 9), 5 bytes of device state, then the disk section: the body the odd mode expects.
        var body: [UInt8] = [2, 5]
        var indices = WireWriter()
        indices.write(UInt64(3))
        indices.write(UInt64(9))
        body += indices.bytes + Array("QEVM!".utf8) + disk
        _ = JournalFile.seal(journal, body: body)
        let sealed = Array(UnsafeRawBufferPointer(journal.file.bytes))
        return [[0] + sealed, [1] + body]
    })
}
