/// A failure of the demo, a benchmark or a test's scaffolding (a command, the network set-up,
/// the guest's service, the agents), with a sentence saying what went wrong.
public struct HarnessError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
