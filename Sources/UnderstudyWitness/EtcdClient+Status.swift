import Foundation

extension EtcdClient {
    /// The answering member's id and the leader it follows (0: none now). etcd answers this
    /// without a quorum, so it tells who leads also while an election runs.
    public func status() throws(WitnessError) -> (member: UInt64, leader: UInt64) {
        let reply = try call("/v3/maintenance/status", [:])
        guard let header = reply["header"] as? [String: Any] else { throw .malformedReply("status reply without \"header\"") }
        return (try Self.unsigned(header, "member_id"), try Self.unsigned(reply, "leader"))
    }

    /// A uint64 field of a status reply (member ids use all 64 bits); absent means 0.
    static func unsigned(_ object: [String: Any], _ field: String) throws(WitnessError) -> UInt64 {
        switch object[field] {
        case let text as String:
            guard let value = UInt64(text) else { throw .malformedReply("status: \(field) \"\(text)\" is not an integer") }
            return value
        case let number as NSNumber:
            return number.uint64Value
        case nil:
            return 0
        default:
            throw .malformedReply("status: \(field) is neither a string nor a number")
        }
    }
}
