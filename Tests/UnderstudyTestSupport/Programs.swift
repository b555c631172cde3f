import Foundation

/// Runs `executable` to completion and returns its exit status and what it printed.
public func runProcess(_ executable: URL, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = executable
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
    return (process.terminationStatus, String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
}

/// Runs a program found on PATH (`arguments[0]`) and returns its standard output, trimmed;
/// throws `TestSupportError` with its error output when it exits with a failure status.
@discardableResult
public func runProgram(_ arguments: [String]) throws -> String {
    let result = try runProcess(URL(fileURLWithPath: "/usr/bin/env"), arguments)
    guard result.status == 0 else {
        throw TestSupportError("\(arguments.joined(separator: " ")) exited with \(result.status): \(result.stderr)\(result.stdout)")
    }
    return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
}

/// A failure of the test harness itself (a command, the network set-up, the guest service).
public struct TestSupportError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
