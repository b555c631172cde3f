import Foundation
import Synchronization
import UnderstudySystem
import UnderstudyTransport

/// Thin etcd v3 client over the HTTP/JSON gateway (blocking).
///
/// The gateway speaks proto3 JSON: keys and values are base64, 64-bit integers are strings, and
/// fields holding their default (0, false, empty) are left out, so a missing `TTL` means 0.
public final class EtcdClient: Sendable {
    /// The client URLs, tried in order, beginning with the one that answered last.
    public let endpoints: [Endpoint]
    /// How long one request to one endpoint may take, connection included.
    public let timeout: Duration
    /// How to reach etcd's client port over TLS (client certificate, CA, etcd's name); nil: plain HTTP.
    public let tls: TLSConfiguration?
    /// Its context, made at the first request (credentials are read then, and again after a
    /// failure, so that fixed files are picked up without a restart).
    private let context = Mutex<TLSContext?>(nil)
    /// Index of the endpoint that answered last: a dead first endpoint then costs one timeout
    /// when it fails, not one on every request.
    private let preferred = Mutex(0)

    /// - Parameter tls: how to reach etcd over TLS with this node's client certificate; nil:
    ///   plain HTTP, for tests of the HTTP layer only (an agent always uses TLS).
    public init(endpoints: [Endpoint], timeout: Duration, tls: TLSConfiguration? = nil) {
        precondition(!endpoints.isEmpty, "etcd needs at least one endpoint")
        self.endpoints = endpoints
        self.timeout = timeout
        self.tls = tls
    }

    /// The TLS context for the next request; nil: plain HTTP.
    private func tlsContext() throws(WitnessError) -> TLSContext? {
        guard let tls else { return nil }
        return try context.withLock { (context) throws(WitnessError) -> TLSContext in
            if let context { return context }
            do {
                let made = try TLSContext(role: .client, configuration: tls)
                context = made
                return made
            } catch {
                throw .rejected("cannot load this node's credentials for the witness: \(error)")
            }
        }
    }

    /// Grants a lease of `ttl` rounded up to whole seconds. Returns its id and the TTL etcd
    /// actually granted, which may be longer (etcd's minimum depends on its election timeout).
    public func grantLease(ttl: Duration) throws(WitnessError) -> (id: Int64, ttl: Duration) {
        let seconds = max(1, Int64(ttl.seconds.rounded(.up)))
        return try Self.grantedLease(call("/v3/lease/grant", ["TTL": String(seconds)]))
    }

    /// The lease id and TTL of a lease-grant reply.
    static func grantedLease(_ reply: [String: Any]) throws(WitnessError) -> (id: Int64, ttl: Duration) {
        if let error = reply["error"] as? String, !error.isEmpty { throw .rejected(error) }
        let id: Int64 = try integer(reply, "ID", in: "lease grant")
        let granted: Int64 = try integer(reply, "TTL", in: "lease grant")
        guard id != 0, granted > 0 else { throw .malformedReply("lease grant returned lease \(id) with TTL \(granted)") }
        return (id, .seconds(granted))
    }

    /// Renews the lease. Returns its TTL from now, or `.zero` when etcd no longer knows it
    /// (expired or revoked): whatever it held is gone.
    public func keepAlive(lease: Int64) throws(WitnessError) -> Duration {
        try Self.renewedTTL(call("/v3/lease/keepalive", ["ID": String(lease)]))
    }

    /// The TTL of a keep-alive reply; `.zero` when the lease is gone.
    static func renewedTTL(_ reply: [String: Any]) throws(WitnessError) -> Duration {
        // LeaseKeepAlive is a stream: the gateway wraps each message in "result", or an "error".
        if let error = reply["error"] as? [String: Any] {
            throw .rejected("keep-alive: \(error["message"] as? String ?? "error without a message")")
        }
        guard let result = reply["result"] as? [String: Any] else {
            throw .malformedReply("keep-alive reply without \"result\"")
        }
        let ttl: Int64 = try integer(result, "TTL", in: "keep-alive", default: 0)
        return ttl > 0 ? .seconds(ttl) : .zero
    }

    /// Revokes the lease, deleting every key attached to it. A lease etcd no longer knows counts
    /// as revoked.
    public func revoke(lease: Int64) throws(WitnessError) {
        let (status, reply) = try request("/v3/lease/revoke", ["ID": String(lease)])
        // gRPC NOT_FOUND: the lease expired or was revoked already, which is the goal.
        if status == 404, (reply["code"] as? NSNumber)?.intValue == 5 { return }
        try check(status, reply)
    }

    /// The key's value and the lease it is attached to (0: none); nil when the key is absent.
    public func get(_ key: String) throws(WitnessError) -> (value: String, lease: Int64)? {
        let reply = try call("/v3/kv/range", ["key": base64(key)])
        return try Self.firstValue(reply, in: "range")
    }

    /// Puts `key` = `value` attached to `lease` if the key is absent or already holds `value`
    /// (this node's earlier claim, moved to the new lease), and, in the same transaction, writes
    /// `next` to `termKey` (no lease: it stays) if that key holds `expected` (nil: it is absent).
    /// Otherwise reports the other holder, or the term found instead; then nothing was written.
    /// Sending the same claim again (same lease and terms) after its reply was lost is acquired.
    public func claim(_ key: String, value: String, lease: Int64, termKey: String, expecting expected: WitnessTerm?,
                      next: WitnessTerm) throws(WitnessError) -> ClaimOutcome {
        let success: [[String: Any]] = [
            ["request_put": ["key": base64(key), "value": base64(value), "lease": String(lease)]],
            ["request_put": ["key": base64(termKey), "value": base64(next.encoded)]],
        ]
        let read: [[String: Any]] = [["request_range": ["key": base64(key)]], ["request_range": ["key": base64(termKey)]]]
        let absent: [String: Any] = ["target": "CREATE", "result": "EQUAL", "key": base64(key), "create_revision": "0"]
        let ours: [String: Any] = ["target": "VALUE", "result": "EQUAL", "key": base64(key), "value": base64(value)]
        let term: [String: Any] = if let expected {
            ["target": "VALUE", "result": "EQUAL", "key": base64(termKey), "value": base64(expected.encoded)]
        } else {
            ["target": "CREATE", "result": "EQUAL", "key": base64(termKey), "create_revision": "0"]
        }
        // etcd ANDs a transaction's comparisons, and a VALUE comparison on an absent key fails,
        // so "absent or ours" takes two transactions. Between them the key may vanish (its
        // lease expired) or appear: start over, a few times.
        for _ in 0..<4 {
            for comparison in [absent, ours] {
                let reply = try call("/v3/kv/txn", ["compare": [comparison, term], "success": success, "failure": read])
                if reply["succeeded"] as? Bool == true { return .acquired }
                let current = try Self.failedClaim(reply, termKey: termKey)
                if let active = current.active, active.value != value { return .heldBy(active.value) }
                // This very claim, sent before, went through and only its reply was lost (the
                // member that took it died, or the reply came after the timeout): the key is
                // ours on this lease and the term is the one it writes. Refused, the node would
                // be fenced by its own claim.
                if let active = current.active, active.lease == lease, current.term == next { return .acquired }
                if current.term != expected { return .termIs(current.term) }
            }
        }
        throw .rejected("the witness key \(key) kept changing while it was claimed")
    }

    /// Deletes `key` only while it holds `value`: a node removes its own claim, never another's.
    public func release(_ key: String, ifValue value: String) throws(WitnessError) {
        let ours: [String: Any] = ["target": "VALUE", "result": "EQUAL", "key": base64(key), "value": base64(value)]
        _ = try call("/v3/kv/txn", ["compare": [ours], "success": [["request_delete_range": ["key": base64(key)]]]])
    }

    // MARK: - Gateway plumbing

    /// POSTs `body` and returns the JSON object of a 200 reply; any other status is `.rejected`.
    func call(_ path: String, _ body: [String: Any]) throws(WitnessError) -> [String: Any] {
        let (status, reply) = try request(path, body)
        try check(status, reply)
        return reply
    }

    private func check(_ status: Int, _ reply: [String: Any]) throws(WitnessError) {
        guard status != 200 else { return }
        let message = reply["message"] as? String ?? reply["error"] as? String ?? "no message"
        throw .rejected("HTTP \(status): \(message)")
    }

    /// POSTs `body` to each endpoint in turn until one replies; returns the status and JSON object.
    private func request(_ path: String, _ body: [String: Any]) throws(WitnessError) -> (status: Int, reply: [String: Any]) {
        let payload: [UInt8]
        do {
            payload = Array(try JSONSerialization.data(withJSONObject: body))
        } catch {
            preconditionFailure("request bodies are built from strings, arrays and dictionaries: \(error)")
        }
        let tls = try tlsContext()
        let first = preferred.withLock { $0 }
        var failures: [String] = []
        for offset in endpoints.indices {
            let index = (first + offset) % endpoints.count
            let reply: HTTPReply
            do {
                reply = try HTTPClient.post(path, body: payload, to: endpoints[index], tls: tls, timeout: timeout)
            } catch .unreachable(let what) {
                failures.append(what)
                continue
            }
            preferred.withLock { $0 = index }
            return (reply.status, try Self.object(of: reply, from: "\(endpoints[index]) \(path)"))
        }
        throw .unreachable(failures.joined(separator: "; "))
    }

    /// The JSON object a gateway reply carries; `source` names the endpoint and path in the error.
    static func object(of reply: HTTPReply, from source: String) throws(WitnessError) -> [String: Any] {
        guard let object = try? JSONSerialization.jsonObject(with: Data(reply.body)) as? [String: Any] else {
            throw .malformedReply("\(source): HTTP \(reply.status) with a body that is not a JSON object: "
                + HTTPReplyParser.excerpt(reply.body))
        }
        return object
    }

    func base64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }

    /// An integer field (int64 or uint64; member ids use all 64 bits): a string in proto3 JSON, a
    /// number from a lenient server; absent means `default`.
    static func integer<Value: FixedWidthInteger>(_ object: [String: Any], _ field: String, in what: String,
                                                  default: Value? = nil) throws(WitnessError) -> Value {
        let text: String
        switch object[field] {
        case let string as String: text = string
        case let number as NSNumber: text = number.stringValue
        case nil:
            guard let `default` else { throw .malformedReply("\(what) reply without \(field)") }
            return `default`
        default:
            throw .malformedReply("\(what): \(field) is neither a string nor a number")
        }
        guard let value = Value(text) else { throw .malformedReply("\(what): \(field) \"\(text)\" is not an integer of \(Value.self)") }
        return value
    }

    /// The first key-value of a range reply: its value (UTF-8) and lease.
    static func firstValue(_ range: [String: Any], in what: String) throws(WitnessError) -> (value: String, lease: Int64)? {
        guard let kvs = range["kvs"] as? [[String: Any]], let kv = kvs.first else { return nil }
        let encoded = kv["value"] as? String ?? ""
        guard let value = Data(base64Encoded: encoded) else { throw .malformedReply("\(what): value is not base64") }
        return (String(decoding: value, as: UTF8.self), try Self.integer(kv, "lease", in: what, default: 0))
    }

    /// The active key and the term as a failed claim's failure branch read them (nil: absent).
    static func failedClaim(_ reply: [String: Any], termKey: String) throws(WitnessError)
        -> (active: (value: String, lease: Int64)?, term: WitnessTerm?) {
        guard let responses = reply["responses"] as? [[String: Any]], responses.count == 2,
              let active = responses[0]["response_range"] as? [String: Any],
              let term = responses[1]["response_range"] as? [String: Any] else {
            throw .malformedReply("failed transaction without the two ranges of its failure branch")
        }
        let holder = try firstValue(active, in: "transaction")
        guard let stored = try firstValue(term, in: "transaction") else { return (holder, nil) }
        guard let parsed = WitnessTerm(encoded: stored.value[...]) else {
            throw .malformedReply("\(termKey) holds \"\(stored.value)\", not \"<number> <node>\"")
        }
        return (holder, parsed)
    }
}
