import Foundation

/// A fresh directory of its own under the system temporary directory,
/// `understudy-LABEL-UUID`, for a test's, a benchmark's or the demo's files.
public struct TemporaryDirectory: Sendable {
    public let path: String

    /// Creates the directory.
    public init(_ label: String) throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-\(label)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    /// Removes the directory and everything in it.
    public func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// Runs `body` with a fresh `TemporaryDirectory`'s path and removes the directory afterwards,
/// whether `body` returns or throws.
public func withTemporaryDirectory<Result>(_ label: String = "test", _ body: (String) throws -> Result) throws -> Result {
    let directory = try TemporaryDirectory(label)
    defer { directory.remove() }
    return try body(directory.path)
}
