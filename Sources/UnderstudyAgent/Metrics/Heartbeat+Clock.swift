import Dispatch
import UnderstudyProtocol

extension Heartbeat {
    /// The clock heartbeats carry: monotonic nanoseconds of this host. Both roles stamp with it,
    /// so an echoed heartbeat's sender time can be subtracted from `now()` (`AgentMetrics`).
    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    /// The next heartbeat to send, stamped now.
    static func stamped(sequence: UInt64) -> Heartbeat { Heartbeat(sequence: sequence, senderTime: now()) }
}
