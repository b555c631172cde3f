import CUnderstudyShims
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import UnderstudySystem
import UnderstudyTransport

/// Serves `GET /metrics` (Prometheus text format 0.0.4) over plain HTTP/1.1.
///
/// One dedicated thread with blocking sockets answers one connection at a time and closes it:
/// a scraper asks every few seconds, so there is nothing to gain from concurrency, and the
/// agent's checkpoint path never waits for it. Each connection has a deadline for the whole
/// exchange, so a client that says nothing, trickles its request a byte at a time, or never
/// reads delays the next scrape by at most that long. A failed accept (out of descriptors, say)
/// is retried after a back-off: only `close` stops the server.
public final class MetricsServer: @unchecked Sendable {
    /// The bound address (with the real port when port 0 was asked for).
    public let endpoint: Endpoint
    private let listener: TCPListener
    private var thread: JoinableThread?
    /// Set by `close`: ends a back-off after a failed accept.
    private let closed = Latch()

    /// The request head may be at most this long; longer requests are answered 431.
    static let maxRequestBytes = 8192
    /// How long one connection may take in all: sending its request, reading the reply.
    static let connectionDeadline: Duration = .seconds(2)
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Listens on `listen` and serves `metrics` until `close`.
    /// - Throws: `MetricsServerError` naming the address when it cannot listen there.
    public init(listen: Endpoint, metrics: AgentMetrics) throws(MetricsServerError) {
        do {
            listener = try TCPListener(endpoint: listen, backlog: 8)
        } catch {
            throw MetricsServerError(address: listen, reason: error)
        }
        endpoint = listener.endpoint
        thread = JoinableThread(name: "metrics-http") { [listener, closed] in
            var loop = AcceptLoop { () throws(TransportError) in try listener.accept() }
            loop.run(pause: { closed.wait(timeout: $0) }, failed: { _, _ in }) { client, _ in
                Self.serve(client, until: .now + Self.connectionDeadline) { metrics.exposition() }
                Glibc.close(client)
            }
        }
    }

    /// Stops listening and waits for the thread (at most one connection's timeout).
    public func close() {
        closed.trigger()
        listener.close()
        thread?.join()
        thread = nil
    }

    deinit { if thread != nil { close() } }

    /// Reads one request from `fd` and writes the reply, giving up at `deadline`; `body` renders the metrics.
    static func serve(_ fd: Int32, until deadline: ContinuousClock.Instant, body: () -> [UInt8]) {
        var request: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 2048)
        while request.count <= maxRequestBytes, headEnd(request) == nil {
            guard wait(fd, for: Int16(POLLIN), until: deadline) else { return }
            // Safe: recv writes at most `chunk.count` bytes into the array's own storage.
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n < 0, errno == EINTR || errno == EAGAIN { continue }
            // Closed, timed out or failed before a whole head arrived: nothing useful to answer.
            guard n > 0 else { return }
            request += chunk[..<n]
        }
        let reply: [UInt8]
        switch route(request) {
        case .metrics(let includeBody):
            let text = body()
            reply = head(200, "OK", contentType: contentType, length: text.count) + (includeBody ? text : [])
        case .error(let code, let reason, let extra):
            let text = Array("\(code) \(reason)\n".utf8)
            reply = head(code, reason, contentType: "text/plain; charset=utf-8", length: text.count, extra: extra) + text
        }
        guard sendAll(reply, to: fd, until: deadline) else { return }
        // Closing with unread request bytes would reset the connection and could destroy the
        // reply in flight (a head too long): end our side, then read until the client closes.
        shutdown(fd, Int32(SHUT_WR))
        var drained = 0
        while drained < 1 << 20 {
            guard wait(fd, for: Int16(POLLIN), until: deadline) else { return }
            // Safe: recv writes at most `chunk.count` bytes into the array's own storage.
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n < 0, errno == EINTR || errno == EAGAIN { continue }
            guard n > 0 else { return }
            drained += n
        }
    }

    enum Route: Equatable {
        /// Answer with the metrics; false for HEAD (headers only).
        case metrics(body: Bool)
        case error(Int, String, extraHeader: String?)
    }

    /// What to answer to the bytes received (a request head, possibly cut off or garbage).
    static func route(_ request: [UInt8]) -> Route {
        guard let end = headEnd(request), end <= maxRequestBytes else {
            if request.count > maxRequestBytes { return .error(431, "Request Header Fields Too Large", extraHeader: nil) }
            return .error(400, "Bad Request", extraHeader: nil)
        }
        // Cut at the first CR or LF as bytes: in a Swift String "\r\n" is one Character.
        let requestLine = String(decoding: request[..<end].prefix { $0 != 13 && $0 != 10 }, as: UTF8.self)
        let parts = requestLine.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1."), !parts[0].isEmpty, parts[1].hasPrefix("/") else {
            return .error(400, "Bad Request", extraHeader: nil)
        }
        let path = parts[1].prefix { $0 != "?" }
        guard path == "/metrics" else { return .error(404, "Not Found", extraHeader: nil) }
        switch parts[0] {
        case "GET": return .metrics(body: true)
        case "HEAD": return .metrics(body: false)
        default: return .error(405, "Method Not Allowed", extraHeader: "Allow: GET, HEAD")
        }
    }

    /// The offset just past the blank line that ends the head, if it arrived.
    private static func headEnd(_ bytes: [UInt8]) -> Int? {
        let crlf: [UInt8] = [13, 10, 13, 10]
        guard bytes.count >= 4 else { return nil }
        for i in 0...(bytes.count - 4) where bytes[i] == 13 && Array(bytes[i..<i + 4]) == crlf { return i + 4 }
        return nil
    }

    private static func head(_ code: Int, _ reason: String, contentType: String, length: Int, extra: String? = nil) -> [UInt8] {
        var text = "HTTP/1.1 \(code) \(reason)\r\nContent-Type: \(contentType)\r\nContent-Length: \(length)\r\nConnection: close\r\n"
        if let extra { text += extra + "\r\n" }
        return Array((text + "\r\n").utf8)
    }

    /// Sends all of `bytes`; false when the connection failed or the deadline passed first.
    private static func sendAll(_ bytes: [UInt8], to fd: Int32, until deadline: ContinuousClock.Instant) -> Bool {
        var offset = 0
        while offset < bytes.count {
            guard wait(fd, for: Int16(POLLOUT), until: deadline) else { return false }
            // Safe: the pointer and count stay inside the array for the duration of the call.
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            if n < 0, errno == EINTR || errno == EAGAIN { continue }
            guard n > 0 else { return false }
            offset += n
        }
        return true
    }

    /// Waits until `fd` is ready for `events` (or has failed, which the next call reports);
    /// false when `deadline` passes first.
    private static func wait(_ fd: Int32, for events: Int16, until deadline: ContinuousClock.Instant) -> Bool {
        while true {
            let left = deadline - .now
            guard left > .zero else { return false }
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let milliseconds = Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
            let ready = poll(&entry, 1, milliseconds)
            if ready > 0 { return true }
            if ready < 0, errno != EINTR { return false }
        }
    }
}
