/// What happens to a backup's sessions, for whoever decides about failover.
public enum BackupEvent: Sendable {
    /// A frame arrived from the primary (a sign of life).
    case heard
    /// A primary's session was accepted; `datagramKey`: the key its TLS session exported for the
    /// datagram heartbeat path (`HeartbeatDatagram.exporterLabel`).
    case sessionStarted(datagramKey: [UInt8])
    /// The primary handed the VM over (switchover): activate from the last checkpoint, which
    /// is applied once the session has ended.
    case handover
}
