#if canImport(Glibc)
import Glibc
#endif

extension Endpoint {
    /// Opens a TCP connection to the endpoint and closes it again: succeeds when something accepts
    /// connections there, seen from the calling thread's network namespace (a health probe).
    public func connectOnce(timeoutMilliseconds: Int32) throws(TransportError) {
        close(try TCPSocket.connect(to: self, timeoutMilliseconds: timeoutMilliseconds))
    }
}
