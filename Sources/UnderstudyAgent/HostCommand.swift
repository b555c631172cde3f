import Foundation

/// Runs the host's network and image tools (`ip`, `qemu-img`).
enum HostCommand {
    /// Runs `arguments` (the program found on PATH) to completion; throws with what it printed
    /// when it fails.
    @discardableResult
    static func run(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw DrillError("cannot run \(arguments[0]): \(error.localizedDescription)")
        }
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw DrillError("\(arguments.joined(separator: " ")) failed (exit \(process.terminationStatus)): "
                             + text.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return text
    }
}
