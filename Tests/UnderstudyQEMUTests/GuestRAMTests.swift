import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif
import UnderstudyQEMU

/// Guest RAM is created for QEMU, which runs as root and maps it shared: a file or symbolic link
/// someone put at its path first would let them read or rewrite the guest's memory.
@Suite("Guest RAM file")
struct GuestRAMTests {
    @Test func creatingRefusesAFileAlreadyThereNamingIt() throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = "\(directory)/ram"
        try Data("planted".utf8).write(to: URL(fileURLWithPath: path))
        #expect {
            _ = try GuestRAM(path: path, size: 1 << 20, create: true)
        } throws: { error in
            "\(error)".contains(path)
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data("planted".utf8), "the file is left as it was")
    }

    @Test func creatingRefusesASymbolicLinkAndLeavesItsTargetAlone() throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let victim = "\(directory)/victim"
        try Data("precious".utf8).write(to: URL(fileURLWithPath: victim))
        let path = "\(directory)/ram"
        #expect(symlink(victim, path) == 0)
        #expect {
            _ = try GuestRAM(path: path, size: 1 << 20, create: true)
        } throws: { error in
            "\(error)".contains(path)
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: victim)) == Data("precious".utf8), "the link's target is untouched")
    }

    @Test func aNewFileIsOwnerOnlyAndMapped() throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = "\(directory)/ram"
        let ram = try GuestRAM(path: path, size: 1 << 20, create: true)
        ram.bytes[4096] = 7
        var info = stat()
        #expect(lstat(path, &info) == 0)
        #expect(info.st_mode & S_IFMT == S_IFREG && info.st_mode & 0o777 == 0o600 && info.st_size == 1 << 20)
    }

    /// The reservation stays a hole; a page written or read through a shared mapping holds data.
    @Test func dataRangesAreThePagesTouchedThroughTheMapping() throws {
        let directory = "/dev/shm/understudy-ram-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ram = try GuestRAM(path: "\(directory)/ram", size: 4 << 20, create: true)
        #expect(ram.dataRanges().isEmpty, "a new guest's memory is all holes")
        ram.bytes[5 * 4096 + 17] = 1
        ram.bytes[6 * 4096] = 2
        let read = ram.bytes[900 * 4096]
        #expect(read == 0)
        let page: UInt64 = 4096
        let expected: [Range<UInt64>] = [(5 * page)..<(7 * page), (900 * page)..<(901 * page)]
        #expect(ram.dataRanges() == expected)
    }

    private static func directory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-ram-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        return path
    }
}
