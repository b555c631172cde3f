/// The outcome of a control command that has nothing more to report.
public struct ControlReply: Sendable, Codable, Equatable {
    public var ok: Bool
    public var message: String

    public init(ok: Bool, message: String) {
        self.ok = ok
        self.message = message
    }
}
