import Foundation

/// A program that exited with a failure status, with what it printed.
public struct ProgramFailed: Error, CustomStringConvertible {
    public let description: String
    public init(description: String) { self.description = description }
}

/// Runs a program found on PATH (`arguments[0]`) and returns its standard output, trimmed;
/// throws `ProgramFailed` with its error output when it exits with a failure status.
@discardableResult
public func runProgram(_ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let output = Pipe()
    let errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    try process.run()
    // Read both before waiting, so that a chatty program cannot block on a full pipe.
    let out = output.fileHandleForReading.readDataToEndOfFile()
    let err = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw ProgramFailed(description: "\(arguments.joined(separator: " ")) exited with \(process.terminationStatus): "
                            + String(decoding: err + out, as: UTF8.self))
    }
    return String(decoding: out, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}
