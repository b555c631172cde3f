import Foundation

/// A fresh directory of its own, `understudy-LABEL-RANDOM` under the system temporary directory
/// (or `parent`), for a test's, a benchmark's or the demo's files. The name is short, so that
/// unix socket paths inside stay under their 108 bytes.
public struct TemporaryDirectory: Sendable {
    public let path: String

    /// Creates the directory.
    public init(_ label: String, in parent: String? = nil) throws {
        let name = "understudy-\(label)-\(UUID().uuidString.prefix(13).lowercased())"
        path = parent.map { "\($0)/\(name)" } ?? FileManager.default.temporaryDirectory.appendingPathComponent(name).path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    /// Removes the directory and everything in it.
    public func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// Runs `body` with a fresh `TemporaryDirectory`'s path and removes the directory afterwards,
/// whether `body` returns or throws.
public func withTemporaryDirectory<Result>(_ label: String = "test", in parent: String? = nil,
                                           _ body: (String) throws -> Result) throws -> Result {
    let directory = try TemporaryDirectory(label, in: parent)
    defer { directory.remove() }
    return try body(directory.path)
}
