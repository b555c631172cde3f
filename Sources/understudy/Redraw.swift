import Foundation

/// `--watch`: shows `show`'s output every `interval` seconds until interrupted, redrawn in place
/// on a terminal, appended with a timestamp and a blank line between when the output is a file
/// or a pipe. A failure is shown in place of the output, and the next refresh tries again.
func redraw(every interval: Double, _ show: () throws -> Void) -> Never {
    let terminal = isatty(STDOUT_FILENO) != 0
    while true {
        if terminal { print("\u{1B}[H\u{1B}[2J", terminator: "") }
        print(Date().formatted(.iso8601))
        do {
            try show()
        } catch {
            print("no status: \(error)")
        }
        if !terminal { print("") }
        fflush(nil)
        Thread.sleep(forTimeInterval: interval)
    }
}
