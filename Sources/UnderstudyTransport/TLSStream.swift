import CUnderstudyShims
import Foundation
import UnderstudySystem

/// A mutually authenticated TLS 1.3 connection, usable from two threads at once: one reading,
/// one writing.
///
/// OpenSSL does not allow concurrent calls on one SSL object, so every SSL call runs under
/// `lock`, on a non-blocking socket; waiting for the socket (poll) happens outside the lock.
/// That gives blocking semantics to each caller without one direction stalling the other.
public final class TLSStream: @unchecked Sendable {
    private let ssl: OpaquePointer
    private let fd: Int32
    private let lock = NSLock()
    private let closedFlag = NSLock()
    private var isShutDown = false
    /// The peer's address, for messages.
    public let peer: String
    /// The verified name of the peer (the expected name its certificate carries).
    public let peerName: String

    /// Connects to `endpoint` and completes the TLS handshake, verifying the server's certificate.
    public static func connect(to endpoint: Endpoint, context: TLSContext, timeoutMilliseconds: Int32 = 5000) throws(TransportError) -> TLSStream {
        precondition(context.role == .client)
        let fd = try endpoint.connect(timeoutMilliseconds: timeoutMilliseconds)
        return try TLSStream(fd: fd, peer: endpoint.description, context: context, timeoutMilliseconds: timeoutMilliseconds)
    }

    /// Completes the server side of the handshake on an accepted socket, verifying the client's certificate.
    public static func accept(fd: Int32, peer: String, context: TLSContext, timeoutMilliseconds: Int32 = 5000) throws(TransportError) -> TLSStream {
        precondition(context.role == .server)
        return try TLSStream(fd: fd, peer: peer, context: context, timeoutMilliseconds: timeoutMilliseconds)
    }

    private init(fd: Int32, peer: String, context: TLSContext, timeoutMilliseconds: Int32) throws(TransportError) {
        guard let ssl = SSL_new(context.context) else {
            close(fd)
            throw .tls("SSL_new: \(openSSLErrors())")
        }
        self.ssl = ssl
        self.fd = fd
        self.peer = peer
        self.peerName = context.configuration.expectedPeerName
        // From here on deinit frees ssl and closes fd on every path.
        SSL_set_fd(ssl, fd)
        // The peer's certificate must name the expected peer; checked during verification, on both sides.
        guard SSL_set1_host(ssl, context.configuration.expectedPeerName) == 1 else {
            throw .tls("cannot set expected peer name: \(openSSLErrors())")
        }
        var timeout = timeval(tv_sec: Int(timeoutMilliseconds / 1000), tv_usec: Int(timeoutMilliseconds % 1000) * 1000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        ERR_clear_error()
        let result = context.role == .client ? SSL_connect(ssl) : SSL_accept(ssl)
        if result != 1 {
            let code = SSL_get_error(ssl, result)
            let savedErrno = errno
            let verify = SSL_get_verify_result(ssl)
            let reason: String
            if verify != X509_V_OK {
                reason = "peer certificate rejected: \(String(cString: X509_verify_cert_error_string(verify)))"
                    + (verify == X509_V_ERR_HOSTNAME_MISMATCH ? " (expected \"\(context.configuration.expectedPeerName)\")" : "")
            } else if code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE
                        || (code == SSL_ERROR_SYSCALL && (savedErrno == EAGAIN || savedErrno == EWOULDBLOCK)) {
                // The socket is blocking with SO_RCVTIMEO/SO_SNDTIMEO: "want more" means the peer went quiet.
                throw .timedOut("TLS handshake with \(peer): no answer within \(timeoutMilliseconds) ms")
            } else if code == SSL_ERROR_SYSCALL {
                reason = savedErrno == 0 ? "the peer closed the connection (did it refuse our certificate?)"
                                         : String(cString: strerror(savedErrno))
            } else {
                reason = openSSLErrors()
            }
            throw .handshakeFailed(peer: peer, reason: reason)
        }
        guard SSL_version(ssl) == TLS1_3_VERSION else {
            throw .handshakeFailed(peer: peer, reason: "negotiated a protocol other than TLS 1.3")
        }
        timeout = timeval()
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0 else {
            throw .system(operation: "fcntl(O_NONBLOCK)", errno: errno)
        }
    }

    deinit {
        SSL_free(ssl)
        close(fd)
    }

    /// Writes all of `buffer` or throws.
    public func write(_ buffer: UnsafeRawBufferPointer) throws(TransportError) {
        var offset = 0
        while offset < buffer.count {
            let chunk = min(buffer.count - offset, 1 << 30)
            let (result, code) = locked { SSL_write(ssl, buffer.baseAddress! + offset, Int32(chunk)) }
            if result > 0 {
                offset += Int(result)
            } else {
                try wait(after: code, operation: "write")
            }
        }
    }

    public func write(_ bytes: [UInt8]) throws(TransportError) {
        let result: Result<Void, TransportError> = bytes.withUnsafeBytes { buffer in
            Result { () throws(TransportError) in try write(buffer) }
        }
        try result.get()
    }

    /// Fills all of `buffer` or throws (`.closed` when the peer ends the stream first).
    /// - Parameter continuingMessage: the bytes continue a message already partly read, so an end
    ///   of stream before the first byte is also "in the middle of a frame".
    public func read(into buffer: UnsafeMutableRawBufferPointer, continuingMessage: Bool = false) throws(TransportError) {
        var offset = 0
        while offset < buffer.count {
            let chunk = min(buffer.count - offset, 1 << 30)
            let (result, code) = locked { SSL_read(ssl, buffer.baseAddress! + offset, Int32(chunk)) }
            if result > 0 {
                offset += Int(result)
            } else {
                try wait(after: code, operation: "read", midMessage: continuingMessage || offset > 0)
            }
        }
    }

    /// Keying material both ends of this TLS session derive alike (RFC 8446 exporter, section
    /// 7.5) and no one else can: a key for messages outside the stream, bound to this session.
    public func exportKeyingMaterial(label: String, length: Int) throws(TransportError) -> [UInt8] {
        var key = [UInt8](repeating: 0, count: length)
        lock.lock()
        let ok = SSL_export_keying_material(ssl, &key, length, label, label.utf8.count, nil, 0, 0)
        lock.unlock()
        guard ok == 1 else { throw .tls("exporting keying material failed") }
        return key
    }

    /// Sends close_notify (best effort) and shuts the socket down; blocked readers and writers
    /// return with `.closed`. Safe to call more than once and from any thread.
    public func shutdown() {
        closedFlag.lock()
        let first = !isShutDown
        isShutDown = true
        closedFlag.unlock()
        guard first else { return }
        _ = locked { SSL_shutdown(ssl) }
        Foundation.shutdown(fd, Int32(SHUT_RDWR))
    }

    private var wasShutDown: Bool {
        closedFlag.lock()
        defer { closedFlag.unlock() }
        return isShutDown
    }

    private func locked(_ call: () -> Int32) -> (Int32, Int32) {
        lock.lock()
        defer { lock.unlock() }
        ERR_clear_error()
        let result = call()
        return (result, result > 0 ? SSL_ERROR_NONE : SSL_get_error(ssl, result))
    }

    /// Waits for the socket when OpenSSL asks to, otherwise turns the failure into an error.
    private func wait(after code: Int32, operation: String, midMessage: Bool = false) throws(TransportError) {
        let events: Int16
        switch code {
        case SSL_ERROR_WANT_READ: events = Int16(POLLIN)
        case SSL_ERROR_WANT_WRITE: events = Int16(POLLOUT)
        case SSL_ERROR_ZERO_RETURN:
            throw .closed(wasShutDown ? "closed locally" : "\(peer) ended the session\(midMessage ? " in the middle of a frame" : "")")
        case SSL_ERROR_SYSCALL:
            let saved = errno
            if wasShutDown { throw .closed("closed locally") }
            throw .closed(saved == 0 ? "\(peer) closed the connection without TLS close_notify\(midMessage ? " in the middle of a frame" : "")"
                                     : "\(operation) to \(peer): \(String(cString: strerror(saved)))")
        case SSL_ERROR_SSL where us_ssl_error_is_unexpected_eof() != 0:
            // OpenSSL 3 reports a vanished peer (crashed, killed) this way rather than as SYSCALL.
            ERR_clear_error()
            if wasShutDown { throw .closed("closed locally") }
            throw .closed("\(peer) closed the connection without TLS close_notify\(midMessage ? " in the middle of a frame" : "")")
        default:
            if wasShutDown { throw .closed("closed locally") }
            throw .tls("\(operation) with \(peer): \(openSSLErrors())")
        }
        if wasShutDown { throw .closed("closed locally") }
        var pfd = pollfd(fd: fd, events: events, revents: 0)
        while poll(&pfd, 1, -1) < 0 {
            guard errno == EINTR else { throw .system(operation: "poll", errno: errno) }
        }
    }
}
