import UnderstudySystem
import UnderstudyTransport
#if canImport(Glibc)
import Glibc
#endif

/// The least HTTP/1.1 the etcd gateway needs: one POST with a JSON body per connection.
///
/// Every request opens its own connection and asks the server to close it. A request that timed
/// out then cannot leave a late reply on a connection that a later request would read as its
/// own, and a connection costs well under a millisecond on loopback (a few on a LAN) against a
/// handful of requests per second. The socket stays non-blocking so that `poll` bounds every
/// step by the request's deadline.
enum HTTPClient {
    /// - Parameter tls: etcd's client port speaks TLS with client certificates (the agent's
    ///   way); nil: plain HTTP (tests of this layer against fake servers).
    static func post(_ path: String, body: [UInt8], to endpoint: Endpoint, tls: TLSContext?, timeout: Duration) throws(WitnessError) -> HTTPReply {
        let deadline = ContinuousClock.now + timeout
        let head = "POST \(path) HTTP/1.1\r\nHost: \(endpoint)\r\nContent-Type: application/json\r\n"
            + "Content-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        let request = Array(head.utf8) + body
        if let tls { return try postOverTLS(request, to: endpoint, context: tls, deadline: deadline, timeout: timeout) }
        let fd = try connect(to: endpoint, deadline: deadline, timeout: timeout)
        defer { close(fd) }
        try sendAll(request, on: fd, to: endpoint, deadline: deadline, timeout: timeout)
        return try readReply(from: endpoint, timeout: timeout) { (chunk: UnsafeMutableRawBufferPointer) throws(WitnessError) -> Int in
            while true {
                guard try wait(fd, for: POLLIN, until: deadline) else { throw noReply(endpoint, timeout) }
                // Safe: recv writes at most `chunk.count` bytes into the caller's buffer.
                let n = recv(fd, chunk.baseAddress!, chunk.count, 0)
                if n >= 0 { return n }
                if errno == EINTR || errno == EAGAIN { continue }
                throw .unreachable("etcd at \(endpoint) unreachable (\(String(cString: strerror(errno))) while reading the reply)")
            }
        }
    }

    private static func postOverTLS(_ request: [UInt8], to endpoint: Endpoint, context: TLSContext, deadline: ContinuousClock.Instant,
                                    timeout: Duration) throws(WitnessError) -> HTTPReply {
        let stream: TLSStream
        do throws(TransportError) {
            let left = Int32(clamping: max(1, (deadline - .now).wholeMillisecondsRoundedUp))
            stream = try TLSStream.connect(to: endpoint, context: context, timeoutMilliseconds: left)
        } catch {
            // A hung etcd still accepts connections (the kernel does), then says nothing.
            if case .timedOut = error { throw noReply(endpoint, timeout) }
            throw .unreachable("etcd at \(endpoint) unreachable over TLS (\(error))")
        }
        defer { stream.shutdown() }
        do {
            try stream.write(request)
        } catch {
            throw .unreachable("etcd at \(endpoint) unreachable (\(error) while sending)")
        }
        return try readReply(from: endpoint, timeout: timeout) { (chunk: UnsafeMutableRawBufferPointer) throws(WitnessError) -> Int in
            do throws(TransportError) {
                return try stream.readSome(into: chunk, deadline: deadline)
            } catch {
                if case .timedOut = error { throw noReply(endpoint, timeout) }
                throw .unreachable("etcd at \(endpoint) unreachable (\(error) while reading the reply)")
            }
        }
    }

    /// Reads with `receive` (bytes read into the buffer, 0 at the end of the stream) until the
    /// bytes so far make a whole reply.
    private static func readReply(from endpoint: Endpoint, timeout: Duration,
                                  _ receive: (UnsafeMutableRawBufferPointer) throws(WitnessError) -> Int) throws(WitnessError) -> HTTPReply {
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let result: Result<Int, WitnessError> = chunk.withUnsafeMutableBytes { buffer in
                Result { () throws(WitnessError) -> Int in try receive(buffer) }
            }
            let n = try result.get()
            received += chunk[..<n]
            do throws(HTTPReplyParser.Failure) {
                if let reply = try HTTPReplyParser.parse(received, complete: n == 0) { return reply }
            } catch {
                switch error {
                case .closedEarly: throw .unreachable("etcd at \(endpoint) closed the connection without replying")
                case .malformed(let what): throw .malformedReply("\(endpoint): \(what)")
                }
            }
        }
    }

    private static func noReply(_ endpoint: Endpoint, _ timeout: Duration) -> WitnessError {
        .unreachable("etcd at \(endpoint) unreachable (no reply within \(timeout.wholeMilliseconds) ms)")
    }

    private static func connect(to endpoint: Endpoint, deadline: ContinuousClock.Instant, timeout: Duration) throws(WitnessError) -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(endpoint.host, String(endpoint.port), &hints, &list)
        guard status == 0, let list else {
            throw .unreachable("etcd at \(endpoint) unreachable (cannot resolve: \(String(cString: gai_strerror(status))))")
        }
        defer { freeaddrinfo(list) }
        var reason = "no address"
        var cursor: UnsafeMutablePointer<addrinfo>? = list
        while let entry = cursor {
            cursor = entry.pointee.ai_next
            let fd = socket(entry.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else {
                reason = String(cString: strerror(errno))
                continue
            }
            // Safe: getaddrinfo's entry stays allocated until freeaddrinfo, after this loop.
            if Glibc.connect(fd, entry.pointee.ai_addr, entry.pointee.ai_addrlen) == 0 { return fd }
            if errno == EINPROGRESS {
                do throws(WitnessError) {
                    if try wait(fd, for: POLLOUT, until: deadline) {
                        var error: Int32 = 0
                        var length = socklen_t(MemoryLayout<Int32>.size)
                        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
                        if error == 0 { return fd }
                        reason = String(cString: strerror(error))
                    } else {
                        reason = "no connection within \(timeout.wholeMilliseconds) ms"
                    }
                } catch {
                    close(fd)
                    throw error
                }
            } else {
                reason = String(cString: strerror(errno))
            }
            close(fd)
        }
        throw .unreachable("etcd at \(endpoint) unreachable (\(reason.lowercased()))")
    }

    private static func sendAll(_ bytes: [UInt8], on fd: Int32, to endpoint: Endpoint, deadline: ContinuousClock.Instant,
                             timeout: Duration) throws(WitnessError) {
        var offset = 0
        while offset < bytes.count {
            // Safe: send reads only the slice's bytes, which the array keeps alive during the call.
            // MSG_NOSIGNAL: a peer that went away must surface as an error, not as SIGPIPE.
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
            if n >= 0 {
                offset += n
            } else if errno == EAGAIN || errno == EINTR {
                guard try wait(fd, for: POLLOUT, until: deadline) else {
                    throw .unreachable("etcd at \(endpoint) unreachable (request not sent within \(timeout.wholeMilliseconds) ms)")
                }
            } else {
                throw .unreachable("etcd at \(endpoint) unreachable (\(String(cString: strerror(errno))) while sending)")
            }
        }
    }

    /// Waits until `fd` is ready for `events` (true) or the deadline passes (false).
    private static func wait(_ fd: Int32, for events: Int32, until deadline: ContinuousClock.Instant) throws(WitnessError) -> Bool {
        while true {
            let left = deadline - .now
            guard left > .zero else { return false }
            var descriptor = pollfd(fd: fd, events: Int16(events), revents: 0)
            let ready = poll(&descriptor, 1, Int32(clamping: left.wholeMillisecondsRoundedUp))
            if ready > 0 { return true }
            if ready < 0 && errno != EINTR { throw .unreachable("poll failed: \(String(cString: strerror(errno)))") }
        }
    }
}
