import Foundation

/// Runs the host's programs (`ip`, `qemu-img`, `mkfs.ext4`, `understudy` itself) to completion:
/// the one process runner of the agent, the demo, the benchmarks and the tests.
public enum HostCommand {
    /// What a finished program left: its exit status and what it printed.
    public struct Output: Sendable {
        public let status: Int32
        public let stdout: String
        public let stderr: String
    }

    /// A program that could not start, or (from `run`) one that exited with a failure status.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    /// Runs `executable` with `arguments`, its input empty, and returns whatever its status;
    /// with a `timeout`, a program still running then is terminated and that is a failure.
    public static func execute(_ executable: String, _ arguments: [String], timeout: Duration? = nil) throws(Failure) -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw Failure("cannot run \(executable): \(error.localizedDescription)")
        }
        // Error output is drained on a thread of its own so that a chatty program cannot stall
        // on one full pipe while the other is being read.
        let said = ErrorOutput()
        let reader = JoinableThread(name: "command-stderr") { said.text = errors.fileHandleForReading.readDataToEndOfFile() }
        let watchdog = timeout.map { limit in
            JoinableThread(name: "command-timeout") {
                let deadline = ContinuousClock.now + limit
                while process.isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.005) }
                if process.isRunning {
                    said.timedOut = true
                    process.terminate()
                }
            }
        }
        let out = output.fileHandleForReading.readDataToEndOfFile()
        reader.join()
        process.waitUntilExit()
        watchdog?.join()
        if said.timedOut, let timeout {
            throw Failure("\(executable) \(arguments.joined(separator: " ")) did not finish within \(timeout)")
        }
        return Output(status: process.terminationStatus, stdout: String(decoding: out, as: UTF8.self),
                      stderr: String(decoding: said.text, as: UTF8.self))
    }

    /// Runs a program found on PATH (`arguments[0]`) and returns its standard output, trimmed;
    /// throws with what it printed when it exits with a failure status.
    @discardableResult
    public static func run(_ arguments: [String]) throws(Failure) -> String {
        let result = try execute("/usr/bin/env", arguments)
        guard result.status == 0 else {
            throw Failure("\(arguments.joined(separator: " ")) failed (exit \(result.status)): "
                          + (result.stderr + result.stdout).trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

extension HostCommand {
    /// What the reader and watchdog threads found, read after they were joined.
    private final class ErrorOutput: @unchecked Sendable {
        var text = Data()
        var timedOut = false
    }
}
