/// Something in the source VM that Understudy cannot protect: the import writes no configuration
/// while there is one. `subject` names the device as the source file does.
public struct ImportBlocker: Sendable, Equatable, Codable {
    public let subject: String
    public let reason: String

    public init(_ subject: String, _ reason: String) {
        self.subject = subject
        self.reason = reason
    }
}
