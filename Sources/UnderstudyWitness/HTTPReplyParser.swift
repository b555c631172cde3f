/// Parses an HTTP/1.1 reply from the bytes received so far. No I/O, so it is tested on its own.
enum HTTPReplyParser {
    enum Failure: Error, Equatable {
        /// The server closed the connection before sending a byte.
        case closedEarly
        case malformed(String)
    }

    /// Anything bigger is not a gateway reply for the few keys the witness reads.
    static let maximumSize = 1 << 20

    /// The reply, or nil when more bytes are needed. `complete`: the server closed the connection,
    /// so what was received is all there is.
    static func parse(_ bytes: [UInt8], complete: Bool) throws(Failure) -> HTTPReply? {
        guard bytes.count <= maximumSize else { throw .malformed("reply larger than \(maximumSize) bytes") }
        guard let headerEnd = find([13, 10, 13, 10], in: bytes, from: 0) else {
            if !complete { return nil }
            throw bytes.isEmpty ? .closedEarly : .malformed("reply ended inside its header: \(excerpt(bytes[...]))")
        }
        let lines = String(decoding: bytes[..<headerEnd], as: UTF8.self).split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusParts = lines[0].split(separator: " ", maxSplits: 2)
        guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/1."), statusParts[1].count == 3, let status = Int(statusParts[1]) else {
            throw .malformed("not an HTTP reply: \(excerpt(bytes[..<headerEnd]))")
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { throw .malformed("header line without a colon: \(excerpt(line.utf8[...]))") }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingSpaces()
        }
        let bodyStart = headerEnd + 4
        if let encoding = headers["transfer-encoding"], encoding.lowercased().contains("chunked") {
            return try dechunk(bytes, from: bodyStart, complete: complete).map { HTTPReply(status: status, body: $0) }
        }
        if let text = headers["content-length"] {
            guard let length = Int(text), length >= 0 else { throw .malformed("Content-Length \"\(text)\"") }
            guard bytes.count - bodyStart >= length else {
                if !complete { return nil }
                throw .malformed("reply ended after \(bytes.count - bodyStart) of \(length) body bytes")
            }
            return HTTPReply(status: status, body: Array(bytes[bodyStart..<bodyStart + length]))
        }
        // Neither: the body runs to the end of the connection.
        return complete ? HTTPReply(status: status, body: Array(bytes[bodyStart...])) : nil
    }

    /// Joins the chunks of a chunked body; nil while the last (empty) chunk has not arrived.
    /// Trailers after it are ignored: the connection is closed right after anyway.
    private static func dechunk(_ bytes: [UInt8], from start: Int, complete: Bool) throws(Failure) -> [UInt8]? {
        var body: [UInt8] = []
        var position = start
        while true {
            guard let lineEnd = find([13, 10], in: bytes, from: position) else { break }
            let sizeText = String(decoding: bytes[position..<lineEnd], as: UTF8.self)
            guard let size = Int(sizeText.split(separator: ";", maxSplits: 1).first.map(String.init)?.trimmingSpaces() ?? "", radix: 16),
                  size >= 0 else {
                throw .malformed("bad chunk size line: \(excerpt(bytes[position..<lineEnd]))")
            }
            if size == 0 { return body }
            // Before any arithmetic with it: a size near Int.max would overflow `dataStart + size`.
            guard size <= maximumSize else { throw .malformed("chunk size \(size) is larger than a reply may be (\(maximumSize) bytes)") }
            let dataStart = lineEnd + 2
            guard bytes.count >= dataStart + size + 2 else { break }
            guard bytes[dataStart + size] == 13, bytes[dataStart + size + 1] == 10 else {
                throw .malformed("chunk of \(size) bytes not followed by CRLF")
            }
            body += bytes[dataStart..<dataStart + size]
            position = dataStart + size + 2
        }
        if complete { throw .malformed("reply ended inside its chunked body") }
        return nil
    }

    private static func find(_ needle: [UInt8], in bytes: [UInt8], from start: Int) -> Int? {
        guard bytes.count >= needle.count else { return nil }
        var index = start
        while index + needle.count <= bytes.count {
            if bytes[index..<index + needle.count].elementsEqual(needle) { return index }
            index += 1
        }
        return nil
    }

    /// The first bytes of something unexpected, printable, for an error message.
    static func excerpt<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> String {
        let text = String(decoding: bytes.prefix(60), as: UTF8.self)
            .map { $0.isASCII && ($0.isLetter || $0.isNumber || $0.isPunctuation || $0.isSymbol || $0 == " ") ? String($0) : "." }
            .joined()
        return "\"\(text)\(bytes.count > 60 ? "…" : "")\""
    }
}
