@testable import UnderstudyWitness

extension FuzzTarget {
    /// What an etcd gateway (or anything listening at its address) answers: the HTTP reply parsed
    /// as it arrives and once the connection closed, its JSON body read as each request's reply.
    static let etcdReplies = FuzzTarget(name: "etcd-replies", run: { bytes in
        // The client parses after every read: the reply so far must parse or ask for more bytes.
        for end in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 8)) {
            _ = try? HTTPReplyParser.parse(Array(bytes[..<end]), complete: false)
        }
        guard let reply = try? HTTPReplyParser.parse(bytes, complete: true),
              let object = try? EtcdClient.object(of: reply, from: "fuzz") else { return }
        _ = try? EtcdClient.grantedLease(object)
        _ = try? EtcdClient.renewedTTL(object)
        _ = try? EtcdClient.firstValue(object, in: "range")
        _ = try? EtcdClient.failedClaim(object, termKey: "/understudy/fuzz/term")
    }, seeds: {
        func reply(_ json: String, chunked: Bool = false) -> [UInt8] {
            let body = Array(json.utf8)
            guard chunked else {
                return Array("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body
            }
            // Two chunks, then the last (empty) one.
            var bytes = Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
            for chunk in [body[..<(body.count / 2)], body[(body.count / 2)...]] {
                bytes += Array("\(String(chunk.count, radix: 16))\r\n".utf8)
                bytes += chunk
                bytes += Array("\r\n".utf8)
            }
            return bytes + Array("0\r\n\r\n".utf8)
        }
        let header = #""header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437","revision":"5","raft_term":"2"}"#
        return [
            reply(#"{\#(header),"ID":"7587867930478462980","TTL":"5"}"#),
            reply(#"{"result":{\#(header),"ID":"7587867930478462980","TTL":"5"}}"#, chunked: true),
            reply(#"{\#(header),"kvs":[{"key":"L3VuZGVyc3R1ZHkvdm0vYWN0aXZl","create_revision":"4","mod_revision":"4","version":"1","value":"cHJpbWFyeQ==","lease":"7587867930478462980"}],"count":"1"}"#),
            // A claim refused by the term: the active key is free, the term key holds "2 node-b".
            reply(#"{\#(header),"responses":[{"response_range":{\#(header)}},{"response_range":{\#(header),"kvs":[{"key":"dGVybQ==","value":"MiBub2RlLWI=","lease":"0"}],"count":"1"}}]}"#),
            Array("HTTP/1.1 404 Not Found\r\nContent-Length: 56\r\n\r\n".utf8) + Array(#"{"error":"etcdserver: requested lease not found","code":5}"#.utf8),
        ]
    })
}
