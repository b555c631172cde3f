import Foundation
import Testing
import UnderstudyDisk
import UnderstudyProtocol

@Suite("DiskChangeJournal")
struct DiskChangeJournalTests {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-journal-\(UUID().uuidString)").path

    static let changes: [DiskChange] = [
        .write(offset: 4096, data: .bytes(Array(repeating: 7, count: 5000))),
        .write(offset: 0, data: .zeroes(length: 1 << 20)),
        .flush,
        .write(offset: 1 << 30, data: .bytes([1, 2, 3])),
    ]

    @Test("changes come back in order, range by range, in batches of the size asked")
    func roundTrip() throws {
        let journal = try DiskChangeJournal(path: path, limit: 1 << 20)
        defer { journal.remove() }
        let first = try journal.append(Self.changes)
        let second = try journal.append([.write(offset: 9, data: .bytes([9]))])
        #expect(first.upperBound == second.lowerBound)
        var read: [DiskChange] = []
        try journal.read(first) { read += $0 }
        #expect(read == Self.changes)
        var batches = 0
        read = []
        try journal.read(first.lowerBound..<second.upperBound, batchBytes: 1) { batch in
            batches += 1
            read += batch
        }
        #expect(read == Self.changes + [.write(offset: 9, data: .bytes([9]))])
        #expect(batches == 3, "a batch closes once it holds batchBytes of data")
        #expect(try (FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) == 0o600)
    }

    @Test("an append past the limit is refused whole; reset empties the journal")
    func limit() throws {
        let journal = try DiskChangeJournal(path: path, limit: 6000)
        defer { journal.remove() }
        let kept = try journal.append([.write(offset: 0, data: .bytes(Array(repeating: 1, count: 4000)))])
        #expect(throws: DiskChangeJournal.JournalError.full(limit: 6000)) {
            try journal.append([.write(offset: 0, data: .bytes(Array(repeating: 2, count: 4000)))])
        }
        #expect(journal.end == kept.upperBound, "nothing of the refused append is kept")
        try journal.reset()
        #expect(journal.end == 0)
        try journal.append([.write(offset: 0, data: .bytes(Array(repeating: 2, count: 4000)))])
    }

    @Test("a range that does not end on a record is reported, not misread")
    func corruptRange() throws {
        let journal = try DiskChangeJournal(path: path, limit: 1 << 20)
        defer { journal.remove() }
        let range = try journal.append(Self.changes)
        #expect(throws: DiskChangeJournal.JournalError.self) { try journal.read(range.lowerBound..<(range.upperBound + 5)) { _ in } }
        #expect(throws: DiskChangeJournal.JournalError.self) { try journal.read((range.lowerBound + 1)..<range.upperBound) { _ in } }
    }
}
