/// The node stopped for another reason than a requested shutdown (QEMU exited, for one).
public struct NodeServiceError: Error, CustomStringConvertible {
    public let reason: StopReason
    public var description: String { "\(reason)" }
}
