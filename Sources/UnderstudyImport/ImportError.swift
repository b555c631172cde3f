/// Why an import could not be carried out (as opposed to a plan that is refused: `ImportPlan.blockers`).
public struct ImportError: Error, Sendable, CustomStringConvertible {
    public let description: String

    public init(_ description: String) { self.description = description }
}
