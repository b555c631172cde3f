import Foundation

extension EtcdClient {
    /// Writes every pair in one transaction, each attached to `lease` (0: none), so a reader
    /// never sees some of them new and others old.
    public func put(_ pairs: [(key: String, value: String)], lease: Int64) throws(WitnessError) {
        guard !pairs.isEmpty else { return }
        let puts: [[String: Any]] = pairs.map { pair in
            var put: [String: Any] = ["key": base64(pair.key), "value": base64(pair.value)]
            if lease != 0 { put["lease"] = String(lease) }
            return ["request_put": put]
        }
        _ = try call("/v3/kv/txn", ["success": puts])
    }

    /// Writes `key` = `value` (no lease: it outlives its writer) in one transaction, only if the
    /// key is absent (`replacing` nil) or was last changed at revision `replacing` (what a read
    /// returned as `modRevision`): of several writers that read the same state, exactly one
    /// succeeds. Returns whether this one did.
    public func create(_ key: String, value: String, replacing modRevision: Int64?) throws(WitnessError) -> Bool {
        let comparison: [String: Any] = if let modRevision {
            ["target": "MOD", "result": "EQUAL", "key": base64(key), "mod_revision": String(modRevision)]
        } else {
            ["target": "CREATE", "result": "EQUAL", "key": base64(key), "create_revision": "0"]
        }
        let reply = try call("/v3/kv/txn", ["compare": [comparison], "success": [["request_put": ["key": base64(key), "value": base64(value)]]]])
        return reply["succeeded"] as? Bool == true
    }

    /// Every key that begins with `prefix`, in key order.
    public func range(prefix: String) throws(WitnessError) -> [EtcdKeyValue] {
        let reply = try call("/v3/kv/range", ["key": base64(prefix), "range_end": Self.rangeEnd(ofPrefix: prefix).base64EncodedString()])
        return try Self.keyValues(reply, in: "range \(prefix)")
    }

    /// The first key after every key that begins with `prefix`: the prefix with its last byte
    /// incremented (etcd's rule, `clientv3.GetPrefixRangeEnd`; UTF-8 has no 0xff byte to carry
    /// over). An empty prefix ends at "\0", etcd's "to the end of the key space".
    static func rangeEnd(ofPrefix prefix: String) -> Data {
        var bytes = Array(prefix.utf8)
        guard let last = bytes.popLast() else { return Data([0]) }
        return Data(bytes + [last + 1])
    }

    /// The key-values of a range reply (none: etcd leaves `kvs` out).
    static func keyValues(_ range: [String: Any], in what: String) throws(WitnessError) -> [EtcdKeyValue] {
        guard let kvs = range["kvs"] else { return [] }
        guard let list = kvs as? [[String: Any]] else { throw .malformedReply("\(what): kvs is not a list") }
        var result: [EtcdKeyValue] = []
        for kv in list {
            guard let key = Data(base64Encoded: kv["key"] as? String ?? ""), let value = Data(base64Encoded: kv["value"] as? String ?? "") else {
                throw .malformedReply("\(what): a key or value is not base64")
            }
            result.append(EtcdKeyValue(key: String(decoding: key, as: UTF8.self), value: String(decoding: value, as: UTF8.self),
                                       lease: try integer(kv, "lease", in: what, default: 0),
                                       modRevision: try integer(kv, "mod_revision", in: what, default: 0)))
        }
        return result
    }
}
