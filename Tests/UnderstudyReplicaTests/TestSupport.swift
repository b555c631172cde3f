import Foundation
import UnderstudyProtocol

/// A fresh directory under the system temporary directory, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init(_ label: String = "replica") {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-test-\(label)-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// Where SwiftPM put the products of this build (the test bundle sits among them).
func productsDirectory() -> URL {
    var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("ReplicaCrashHelper").path) { return url }
    }
    fatalError("cannot find the build products next to \(CommandLine.arguments[0])")
}
