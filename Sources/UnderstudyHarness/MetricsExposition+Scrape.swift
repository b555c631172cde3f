import Foundation
#if canImport(Glibc)
import Glibc
#endif
import UnderstudySystem

extension MetricsExposition {
    /// GET /metrics from an agent's metrics endpoint (plain HTTP/1.1, one request per connection).
    public static func scrape(_ endpoint: Endpoint, timeout: Duration = .seconds(5)) throws -> MetricsExposition {
        let fd = try endpoint.connect(timeoutMilliseconds: Int32(timeout.seconds * 1000))
        defer { close(fd) }
        var seconds = timeval(tv_sec: Int(timeout.seconds), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &seconds, socklen_t(MemoryLayout<timeval>.size))
        let request = Array("GET /metrics HTTP/1.1\r\nHost: \(endpoint)\r\nConnection: close\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == request.count else {
            throw HarnessError("cannot send the metrics request to \(endpoint): \(String(cString: strerror(errno)))")
        }
        var reply: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 { throw HarnessError("reading metrics from \(endpoint): \(String(cString: strerror(errno)))") }
            if count == 0 { break }
            reply += buffer[..<count]
        }
        let text = String(decoding: reply, as: UTF8.self)
        guard text.hasPrefix("HTTP/1.1 200 "), let body = text.range(of: "\r\n\r\n") else {
            throw HarnessError("unexpected metrics reply from \(endpoint): \(text.prefix(80))")
        }
        return MetricsExposition(text: String(text[body.upperBound...]))
    }
}
