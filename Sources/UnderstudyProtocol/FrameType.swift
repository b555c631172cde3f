/// Frame types of protocol version 1. The numbering is part of the wire format (docs/PROTOCOL.md).
public enum FrameType: UInt8, Sendable, CaseIterable {
    case hello = 0x01
    case welcome = 0x02
    case reject = 0x03
    case syncBegin = 0x10
    case syncPages = 0x11
    case syncEnd = 0x12
    /// Only when both sides agreed the catch-up capability.
    case catchUpBegin = 0x13
    case checkpointBegin = 0x20
    case pages = 0x21
    case deviceState = 0x22
    case diskWrites = 0x23
    case checkpointEnd = 0x24
    case ack = 0x30
    case heartbeat = 0x40
    /// Only when both sides agreed the heartbeat-echo capability.
    case heartbeatEcho = 0x41
    /// Only when both sides agreed the input-replay capability.
    case guestInput = 0x42
    case goodbye = 0x50
}
