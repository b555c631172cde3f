/// The loop of a listening thread: accepts connections until the listener is closed, and keeps
/// accepting after any other failure, waiting out an `AcceptBackoff` first.
public struct AcceptLoop {
    /// Takes one connection: `TCPListener.accept`, or a stand-in in tests.
    public typealias Accept = () throws(TransportError) -> (fd: Int32, peer: String)

    private let accept: Accept
    private var backoff: AcceptBackoff

    public init(backoff: AcceptBackoff = AcceptBackoff(), accept: @escaping Accept) {
        self.accept = accept
        self.backoff = backoff
    }

    /// Runs until accept reports the listener closed, or `pause` returns true (the owner stops).
    /// - Parameters:
    ///   - pause: waits out a back-off after a failure; true when the owner is stopping meanwhile.
    ///   - failed: told of each failure and the back-off that follows it (to log it).
    ///   - handle: takes each accepted connection; it owns the descriptor from then on.
    public mutating func run(pause: (Duration) -> Bool, failed: (TransportError, Duration) -> Void,
                             handle: (Int32, String) -> Void) {
        while true {
            let accepted: (fd: Int32, peer: String)
            do {
                accepted = try accept()
            } catch {
                if case .closed = error { return }
                let delay = backoff.failed()
                failed(error, delay)
                if pause(delay) { return }
                continue
            }
            backoff.succeeded()
            handle(accepted.fd, accepted.peer)
        }
    }
}
