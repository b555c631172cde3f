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
/// agent's checkpoint path never waits for it. Every read and write on a connection has a
/// timeout, so a client that connects and says nothing (or never reads) delays the next scrape
/// by at most that long and cannot stop the server.
public final class MetricsServer: @unchecked Sendable {
    /// The bound address (with the real port when port 0 was asked for).
    public let endpoint: Endpoint
    private let listener: TCPListener
    private var thread: JoinableThread?

    /// The request head may be at most this long; longer requests are answered 431.
    static let maxRequestBytes = 8192
    /// How long a connection may take to send its request, or to read the reply.
    static let ioTimeout: Duration = .seconds(2)
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
        thread = JoinableThread(name: "metrics-http") { [listener] in
            while true {
                let client: Int32
                do {
                    client = try listener.accept().fd
                } catch {
                    // Closed by `close`, or a failure of the listening socket itself: either way no more scrapes.
                    return
                }
                Self.serve(client) { metrics.exposition() }
                Glibc.close(client)
            }
        }
    }

    /// Stops listening and waits for the thread (at most one connection's timeout).
    public func close() {
        listener.close()
        thread?.join()
        thread = nil
    }

    deinit { if thread != nil { close() } }

    /// Reads one request from `fd` and writes the reply; `body` renders the metrics.
    static func serve(_ fd: Int32, body: () -> [UInt8]) {
        setTimeout(fd, SO_RCVTIMEO)
        setTimeout(fd, SO_SNDTIMEO)
        var request: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 2048)
        while request.count <= maxRequestBytes, headEnd(request) == nil {
            // Safe: recv writes at most `chunk.count` bytes into the array's own storage.
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0, errno == EINTR { continue }
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
        sendAll(reply, to: fd)
        // Closing with unread request bytes would reset the connection and could destroy the
        // reply in flight (a head too long): end our side, then read until the client closes.
        shutdown(fd, Int32(SHUT_WR))
        var drained = 0
        while drained < 1 << 20 {
            // Safe: recv writes at most `chunk.count` bytes into the array's own storage.
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0, errno == EINTR { continue }
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

    private static func sendAll(_ bytes: [UInt8], to fd: Int32) {
        var offset = 0
        while offset < bytes.count {
            // Safe: the pointer and count stay inside the array for the duration of the call.
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return }
            offset += n
        }
    }

    private static func setTimeout(_ fd: Int32, _ option: Int32) {
        var value = timeval(tv_sec: Int(ioTimeout.components.seconds), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, option, &value, socklen_t(MemoryLayout<timeval>.size))
    }
}
