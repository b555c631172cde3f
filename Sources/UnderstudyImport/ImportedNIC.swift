/// One NIC of the imported VM, in guest order: a virtio-net device behind the agent's output
/// gate, on a TAP device of this name on each host.
public struct ImportedNIC: Sendable, Equatable, Codable {
    public var mac: String
    public var tap: String
    /// Where the source connected it (a bridge or network name), for the operator's TAP setup.
    public var connection: String?

    public init(mac: String, tap: String, connection: String?) {
        self.mac = mac
        self.tap = tap
        self.connection = connection
    }
}
