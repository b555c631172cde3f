/// What the import does differently from the source VM, and why: a device becomes another
/// (an e1000 NIC becomes virtio-net) or is left out (graphics, sound, a USB tablet).
public struct ImportChange: Sendable, Equatable, Codable {
    public let subject: String
    public let change: String
    public let reason: String

    public init(_ subject: String, _ change: String, because reason: String) {
        self.subject = subject
        self.change = change
        self.reason = reason
    }
}
