/// Why a drill could not run or did not pass, in a sentence for the operator.
public struct DrillError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
