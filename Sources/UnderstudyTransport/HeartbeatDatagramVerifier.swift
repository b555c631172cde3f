/// What the receiving side of the datagram heartbeat path accepts as the peer's sign of life: a
/// value with no I/O. Only datagrams authenticated under the current session's key, from the
/// peer's address, with a sequence above every one accepted under that key, count: a forged one
/// fails the MAC, and a captured one replayed later fails the sequence.
public struct HeartbeatDatagramVerifier: Sendable {
    public let vm: String
    public let peerName: String
    private var key: [UInt8]?
    private var lastSequence: UInt64?

    public init(vm: String, peerName: String) {
        self.vm = vm
        self.peerName = peerName
    }

    /// Why a datagram did not count.
    public enum Rejection: Error, Sendable, Equatable {
        /// No replication session has given a key yet: nothing can be authenticated.
        case noKey
        /// From another address than the configured peer.
        case wrongSource
        case invalid(HeartbeatDatagram.Rejection)
        /// A sequence at or below one already accepted under this key.
        case replayed(sequence: UInt64, last: UInt64)
    }

    /// A new replication session's key: from now on only datagrams made under it count.
    public mutating func use(key: [UInt8]) {
        guard key != self.key else { return }
        self.key = key
        lastSequence = nil
    }

    /// A datagram arrived; `fromPeer`: its source address is the configured peer's.
    public mutating func received(_ bytes: [UInt8], fromPeer: Bool) -> Result<HeartbeatDatagram, Rejection> {
        guard let key else { return .failure(.noKey) }
        guard fromPeer else { return .failure(.wrongSource) }
        let datagram: HeartbeatDatagram
        do {
            datagram = try HeartbeatDatagram.verify(bytes, key: key, vm: vm, sender: peerName)
        } catch {
            return .failure(.invalid(error))
        }
        if let lastSequence, datagram.sequence <= lastSequence { return .failure(.replayed(sequence: datagram.sequence, last: lastSequence)) }
        lastSequence = datagram.sequence
        return .success(datagram)
    }
}
