import Testing
@testable import UnderstudyWitness

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

@Suite struct HTTPReplyParserTests {
    @Test func aContentLengthReplyIsCompleteOnceItsBodyIsIn() throws {
        let reply = bytes("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        #expect(try HTTPReplyParser.parse(Array(reply.dropLast()), complete: false) == nil)
        #expect(try HTTPReplyParser.parse(reply, complete: false) == HTTPReply(status: 200, body: bytes("{}")))
    }

    @Test func aChunkedReplyIsJoinedAndItsTrailersIgnored() throws {
        // What the gateway sends for an error: chunked, with a gRPC trailer after the last chunk.
        let head = "HTTP/1.1 404 Not Found\r\nTrailer: Grpc-Trailer-Content-Type\r\nTransfer-Encoding: chunked\r\n\r\n"
        let reply = bytes(head + "5\r\n{\"a\":\r\n3;ext=1\r\n12}\r\n0\r\nGrpc-Trailer-Content-Type: application/grpc\r\n\r\n")
        #expect(try HTTPReplyParser.parse(reply, complete: true) == HTTPReply(status: 404, body: bytes("{\"a\":12}")))
        #expect(try HTTPReplyParser.parse(bytes(head + "5\r\n{\"a\":\r\n"), complete: false) == nil, "the last chunk is still to come")
    }

    @Test func withoutALengthTheBodyRunsToTheEndOfTheConnection() throws {
        let reply = bytes("HTTP/1.0 200 OK\r\n\r\n{\"x\":1}")
        #expect(try HTTPReplyParser.parse(reply, complete: false) == nil)
        #expect(try HTTPReplyParser.parse(reply, complete: true) == HTTPReply(status: 200, body: bytes("{\"x\":1}")))
    }

    @Test func garbageIsMalformedNotACrash() {
        let cases: [(String, String)] = [
            ("SSH-2.0-OpenSSH_9.2\r\n\r\n", "not an HTTP reply"),
            ("HTTP/1.1 2000 OK\r\n\r\n", "not an HTTP reply"),
            ("HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "header line without a colon"),
            ("HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n", "Content-Length"),
            ("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", "reply ended after 2 of 10 body bytes"),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size line"),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}xx", "not followed by CRLF"),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n", "inside its chunked body"),
            ("HTTP/1.1 200", "inside its header"),
        ]
        for (reply, expected) in cases {
            #expect {
                _ = try HTTPReplyParser.parse(bytes(reply), complete: true)
            } throws: { error in
                guard case .malformed(let what) = error as? HTTPReplyParser.Failure else { return false }
                return what.contains(expected)
            }
        }
    }

    @Test func aConnectionClosedBeforeAnyByteIsNotAMalformedReply() {
        #expect(throws: HTTPReplyParser.Failure.closedEarly) { try HTTPReplyParser.parse([], complete: true) }
    }

    @Test func anOversizedReplyIsRefused() {
        let reply = bytes("HTTP/1.1 200 OK\r\n\r\n") + [UInt8](repeating: 0x20, count: HTTPReplyParser.maximumSize)
        #expect(throws: HTTPReplyParser.Failure.malformed("reply larger than \(HTTPReplyParser.maximumSize) bytes")) {
            try HTTPReplyParser.parse(reply, complete: false)
        }
    }
}

extension HTTPReplyParserTests {
    /// `dataStart + size` overflowed (a trap) on a chunk size near Int.max: any peer on the
    /// witness's path could crash the primary.
    @Test(arguments: ["7fffffffffffffff", "7ffffffffffffffd", "100001"])
    func anAbsurdChunkSizeIsMalformedNotACrash(_ size: String) {
        let reply = bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\(size)\r\n{}\r\n")
        for complete in [false, true] {
            #expect {
                _ = try HTTPReplyParser.parse(reply, complete: complete)
            } throws: { error in
                guard case .malformed(let what) = error as? HTTPReplyParser.Failure else { return false }
                return what.contains("chunk size") && what.contains("larger than")
            }
        }
    }
}
