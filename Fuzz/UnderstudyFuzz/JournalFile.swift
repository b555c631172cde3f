import Foundation
import UnderstudyProtocol
@testable import UnderstudyReplica

/// The journal target's file and what it does with it: a private file per fuzzing process.
enum JournalFile {
    static let pageSize = 4096
    static let path: String = {
        let directory = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        let path = "\(directory)/understudy-fuzz-journal-\(getpid())"
        atexit { unlink(JournalFile.path) }
        return path
    }()

    static func write(_ bytes: [UInt8]) {
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else { preconditionFailure("cannot write \(path)") }
    }

    /// Seals a journal whose body comes from `body`: page count (u8, at most 3), device-state
    /// length (u8), then the page indices, the device state and, all the rest, the disk section.
    /// The pages themselves stay zero: their content is never interpreted.
    static func seal(_ journal: EpochJournal, body: [UInt8]) -> EpochJournal.Header {
        let pageCount = Int(body.first ?? 0) % 4
        let deviceLength = Int(body.dropFirst().first ?? 0)
        var rest = Array(body.dropFirst(2))
        let indices = Array(rest.prefix(8 * pageCount)) + [UInt8](repeating: 0, count: max(0, 8 * pageCount - rest.count))
        rest = Array(rest.dropFirst(8 * pageCount))
        let device = Array(rest.prefix(deviceLength)) + [UInt8](repeating: 0, count: max(0, deviceLength - rest.count))
        let disk = Array(rest.dropFirst(deviceLength))
        let layout = EpochJournal.Layout(pageCount: pageCount, pageSize: pageSize, deviceStateLength: deviceLength, diskLength: disk.count)
        let header = EpochJournal.Header(baseGeneration: 41, epoch: 4711, layout: layout)
        try! journal.begin(header)
        for slot in 0..<pageCount {
            journal.pageIndexSlot(slot, layout: layout).copyMemory(from: Array(indices[(8 * slot)..<(8 * slot + 8)]), byteCount: 8)
        }
        device.withUnsafeBytes { journal.deviceState(layout: layout).copyMemory(from: $0) }
        disk.withUnsafeBytes { journal.diskSection(layout: layout).copyMemory(from: $0) }
        journal.seal(header)
        return header
    }

    /// Reads what recovery reads from a complete journal.
    static func readBody(of journal: EpochJournal, _ header: EpochJournal.Header) {
        let layout = header.layout
        for slot in 0..<layout.pageCount {
            _ = journal.pageIndex(slot, layout: layout)
            _ = journal.page(slot, layout: layout).first
        }
        _ = Array(journal.deviceState(layout: layout))
        try? EpochJournal.forEachDiskRecord(in: UnsafeRawBufferPointer(journal.diskSection(layout: layout))) { record in
            if case .write(_, let bytes) = record { _ = bytes.last }
        }
    }
}
