import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif
import UnderstudyQEMU

/// The owner-only directory for the files root's QEMU opens by name (guest RAM, device state):
/// its path is predictable, so whatever someone else put there first is refused, named.
@Suite("Private directory")
struct PrivateDirectoryTests {
    @Test func isCreatedOwnerOnly() throws {
        let parent = try Self.parent()
        defer { try? FileManager.default.removeItem(atPath: parent) }
        let directory = try PrivateDirectory(path: "\(parent)/vm")
        var info = stat()
        #expect(lstat(directory.path, &info) == 0)
        #expect(info.st_mode & S_IFMT == S_IFDIR && info.st_mode & 0o777 == 0o700 && info.st_uid == geteuid())
        // A restarted agent finds its own directory again.
        #expect(try PrivateDirectory(path: directory.path) == directory)
    }

    @Test func aFileAtThePathIsRefusedNamingIt() throws {
        let parent = try Self.parent()
        defer { try? FileManager.default.removeItem(atPath: parent) }
        let path = "\(parent)/vm"
        try Data("planted".utf8).write(to: URL(fileURLWithPath: path))
        Self.expectRefusal(path, mentioning: "not a directory")
    }

    @Test func aSymbolicLinkIsRefusedEvenToAPrivateDirectory() throws {
        let parent = try Self.parent()
        defer { try? FileManager.default.removeItem(atPath: parent) }
        let target = try PrivateDirectory(path: "\(parent)/elsewhere")
        let path = "\(parent)/vm"
        #expect(symlink(target.path, path) == 0)
        Self.expectRefusal(path, mentioning: "symbolic link")
    }

    @Test(arguments: [0o755, 0o777, 0o710, 0o701] as [mode_t])
    func aDirectoryOthersMayEnterIsRefused(mode: mode_t) throws {
        let parent = try Self.parent()
        defer { try? FileManager.default.removeItem(atPath: parent) }
        let path = "\(parent)/vm"
        #expect(mkdir(path, 0o700) == 0 && chmod(path, mode) == 0)
        Self.expectRefusal(path, mentioning: "owner-only")
    }

    @Test func aDirectoryOfAnotherUserIsRefused() throws {
        guard geteuid() == 0 else { return }  // only root can give a directory away
        let parent = try Self.parent()
        defer { try? FileManager.default.removeItem(atPath: parent) }
        let path = "\(parent)/vm"
        #expect(mkdir(path, 0o700) == 0 && chown(path, 65534, 65534) == 0)
        Self.expectRefusal(path, mentioning: "user 65534")
    }

    /// Inside, files are created exclusively and never through a link: what an earlier run left
    /// under the name is replaced, and a link's target is not touched.
    @Test func filesInsideAreCreatedAfreshAndOwnerOnly() throws {
        let parent = try Self.parent()
        defer { try? FileManager.default.removeItem(atPath: parent) }
        let directory = try PrivateDirectory(path: "\(parent)/vm")
        let victim = "\(parent)/victim"
        try Data("precious".utf8).write(to: URL(fileURLWithPath: victim))
        #expect(symlink(victim, directory.file("device-state")) == 0)
        try directory.write([1, 2, 3], to: "device-state", purpose: "the device state")
        #expect(try Data(contentsOf: URL(fileURLWithPath: victim)) == Data("precious".utf8))
        var info = stat()
        #expect(lstat(directory.file("device-state"), &info) == 0)
        #expect(info.st_mode & S_IFMT == S_IFREG && info.st_mode & 0o777 == 0o600)
        #expect(try Data(contentsOf: URL(fileURLWithPath: directory.file("device-state"))) == Data([1, 2, 3]))
        try directory.write([4], to: "device-state", purpose: "the device state")
        #expect(try Data(contentsOf: URL(fileURLWithPath: directory.file("device-state"))) == Data([4]))

        directory.discard("device-state")
        #expect(!FileManager.default.fileExists(atPath: directory.file("device-state")))
        #expect(try Data(contentsOf: URL(fileURLWithPath: victim)) == Data("precious".utf8), "the link's target stayed as it was")
    }

    private static func expectRefusal(_ path: String, mentioning reason: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(sourceLocation: sourceLocation) {
            _ = try PrivateDirectory(path: path)
        } throws: { error in
            "\(error)".contains(path) && "\(error)".contains(reason)
        }
    }

    private static func parent() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-private-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        return path
    }
}
