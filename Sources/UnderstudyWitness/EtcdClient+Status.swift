import Foundation

extension EtcdClient {
    /// The answering member's id and the leader it follows (0: none now). etcd answers this
    /// without a quorum, so it tells who leads also while an election runs.
    public func status() throws(WitnessError) -> (member: UInt64, leader: UInt64) {
        let reply = try call("/v3/maintenance/status", [:])
        guard let header = reply["header"] as? [String: Any] else { throw .malformedReply("status reply without \"header\"") }
        return (try Self.integer(header, "member_id", in: "status", default: 0), try Self.integer(reply, "leader", in: "status", default: 0))
    }
}
