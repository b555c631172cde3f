#if canImport(Glibc)
import Glibc
#endif

extension Endpoint {
    /// Opens a TCP connection to the endpoint and closes it again: succeeds when something accepts
    /// connections there, seen from the calling thread's network namespace (a health probe).
    public func connectOnce(timeoutMilliseconds: Int32) throws(TransportError) {
        close(try connect(timeoutMilliseconds: timeoutMilliseconds))
    }

    /// Opens a TCP connection to the endpoint from the calling thread's network namespace: a
    /// blocking, close-on-exec socket with TCP_NODELAY, which the caller closes.
    public func connect(timeoutMilliseconds: Int32) throws(TransportError) -> Int32 {
        try TCPSocket.connect(to: self, timeoutMilliseconds: timeoutMilliseconds)
    }
}
