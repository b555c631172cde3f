import Foundation
import UnderstudySystem

/// The `exec:COMMAND` drill probe: `/bin/sh -c COMMAND`, tried until it exits with 0. The caller
/// runs it on a thread inside the drill's network namespace, so the command (and whatever it
/// starts) reaches the clone and nothing else on the network.
///
/// Each try is bounded: a command that hangs (a client waiting on an address that does not answer
/// yet) has its whole process group killed, and the next try starts. The end of what the last try
/// printed is kept for the failure reason.
struct ExecProbe: Sendable {
    /// What one try did.
    enum Attempt: Sendable, Equatable, CustomStringConvertible {
        /// The command exited with `status` (128 + N when signal N ended it).
        case exited(status: Int32, output: String)
        /// The command ran longer than the try's limit, and its process group was killed.
        case killed(after: Duration, output: String)
        /// The shell could not be started.
        case notStarted(String)

        var succeeded: Bool {
            if case .exited(0, _) = self { true } else { false }
        }

        var output: String {
            switch self {
            case .exited(_, let output), .killed(_, let output): output
            case .notStarted: ""
            }
        }

        var description: String {
            let said = output.isEmpty ? "" : ": \(output)"
            switch self {
            case .exited(let status, _): return "exit \(status)\(said)"
            case .killed(let after, _): return "still running after \(after), killed\(said)"
            case .notStarted(let why): return why
            }
        }
    }

    let command: String
    /// Where each try's standard output and error go (emptied for every try).
    let outputFile: String
    /// The longest one try may run.
    var attemptLimit: Duration = .seconds(10)
    /// How much of the last try's output the failure reason quotes.
    var tailBytes = 400

    /// Tries until the command exits with 0 (nil), `deadline`, or `stop`; returns why it failed.
    func run(deadline: ContinuousClock.Instant, timeout: Duration, stop: StopSignal) -> String? {
        var last: Attempt?
        while true {
            if let reason = stop.reason { return "drill stopped: \(reason)" }
            guard ContinuousClock.now < deadline else {
                return "the probe exec:\(command) did not succeed within \(timeout) (last attempt: \(last.map { "\($0)" } ?? "none"))"
            }
            let tried = attempt(until: min(ContinuousClock.now + attemptLimit, deadline), stop: stop)
            if tried.succeeded { return nil }
            last = tried
            if case .notStarted(let why) = tried { return "the probe exec:\(command) could not run: \(why)" }
            _ = stop.wait(timeout: .milliseconds(200))
        }
    }

    /// One try, killed at `end` or on `stop`.
    func attempt(until end: ContinuousClock.Instant, stop: StopSignal) -> Attempt {
        let started = ContinuousClock.now
        let process: SpawnedProcess
        do {
            process = try SpawnedProcess(executable: "/bin/sh", arguments: ["sh", "-c", command],
                                         environment: ProcessInfo.processInfo.environment, output: outputFile)
        } catch {
            return .notStarted("\(error)")
        }
        while true {
            if let status = process.exitStatus() { return .exited(status: status, output: tail()) }
            if ContinuousClock.now >= end || stop.isSet {
                process.signalGroup(SIGKILL)
                while process.exitStatus() == nil { Thread.sleep(forTimeInterval: 0.005) }
                return .killed(after: ContinuousClock.now - started, output: tail())
            }
            _ = stop.wait(timeout: .milliseconds(20))
        }
    }

    /// The end of the output file, on one line.
    private func tail() -> String {
        guard let data = FileManager.default.contents(atPath: outputFile) else { return "" }
        let text = String(decoding: data.suffix(tailBytes), as: UTF8.self)
        return text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            .joined(separator: " | ")
    }
}
