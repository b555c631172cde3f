import Foundation

/// Where SwiftPM put this build's products (executables, the preload library).
public func productsDirectory() -> URL {
    var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("libUnderstudyPreload.so").path) { return url }
    }
    fatalError("cannot find the build products (libUnderstudyPreload.so) near \(CommandLine.arguments[0]); run swift build first")
}
