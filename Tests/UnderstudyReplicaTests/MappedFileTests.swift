import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import UnderstudyReplica

/// A full sync starts by zeroing the replica's memory file: every byte reads as zero again, the
/// file keeps its size and its reservation (a full file system must show at the start, not as a
/// SIGBUS later), and the mapping stays usable.
@Suite("Mapped replica file")
struct MappedFileTests {
    @Test(arguments: ["/dev/shm", NSTemporaryDirectory()])
    func zeroingLeavesZeroesInTheReservedFile(parent: String) throws {
        let directory = "\(parent)/understudy-mapped-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let size = 8 << 20
        let file = try MappedFile(path: "\(directory)/memory", size: size)
        for page in [0, 1, 7, 1000, 2047] { file.bytes[page * 4096 + 5] = UInt8(page % 250 + 1) }
        try file.zero()
        #expect(file.size == size && file.bytes.count == size)
        #expect(!file.bytes.contains { $0 != 0 }, "every byte reads as zero")
        var info = stat()
        #expect(stat("\(directory)/memory", &info) == 0)
        #expect(Int(info.st_size) == size)
        #expect(Int(info.st_blocks) * 512 >= size, "the whole file is still reserved (\(info.st_blocks) blocks)")
        file.bytes[3 * 4096] = 9
        let reopened = try Data(contentsOf: URL(fileURLWithPath: "\(directory)/memory"))
        #expect(reopened[3 * 4096] == 9 && reopened[7 * 4096 + 5] == 0, "the mapping still writes the file")
    }
}
