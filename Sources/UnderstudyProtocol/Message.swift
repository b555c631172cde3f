/// The protocol version this build speaks. A peer with another version is refused in the handshake.
public let understudyProtocolVersion: UInt16 = 1

/// The first 8 bytes of every HELLO payload, so that a peer of another protocol is recognised.
public let understudyMagic: [UInt8] = Array("UNDSTUDY".utf8)

/// Every frame of protocol version 1, decoded.
public enum Message: Sendable, Equatable {
    case hello(Hello)
    case welcome(Welcome)
    case reject(SessionClose)
    case syncBegin(SyncBegin)
    case syncPages(PageBatch)
    case syncEnd(ContentSummary)
    /// Instead of SYNC_BEGIN (catch-up capability): the replica stays as committed at
    /// `baseEpoch`, and the next checkpoint, whatever its number, brings it up to date.
    case catchUpBegin(baseEpoch: UInt64)
    case checkpointBegin(epoch: UInt64)
    case pages(PageBatch)
    case deviceState(DeviceStateChunk)
    case diskWrites(DiskWriteBatch)
    case checkpointEnd(ContentSummary)
    case ack(epoch: UInt64)
    case heartbeat(Heartbeat)
    /// A HEARTBEAT sent back unchanged (heartbeat-echo capability): its sender's round trip.
    case heartbeatEcho(Heartbeat)
    /// A frame the primary's gate gave the guest while epoch `epoch` was open (input-replay
    /// capability): a backup taking over gives the resumed guest those its checkpoint may lack.
    case guestInput(epoch: UInt64, frame: [UInt8])
    case goodbye(SessionClose)
}
