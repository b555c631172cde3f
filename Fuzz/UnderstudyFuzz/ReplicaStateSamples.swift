import UnderstudyProtocol
@testable import UnderstudyReplica

enum ReplicaStateSamples {
    /// A state file with `body` after the magic and a valid checksum over both.
    static func sealed(body: [UInt8]) -> [UInt8] {
        let content = ReplicaState.magic + body
        return content + EpochDigest.sha256(content)
    }
}
