/// Why an inspection could not run, in a sentence for the operator.
public struct InspectionError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The command's program is not on PATH (or not executable): `understudy inspect` exits 127.
        case commandNotFound
        /// Anything else (no replica, no root, no filesystem, ...): it exits 125.
        case cannotInspect
    }

    public let kind: Kind
    public let description: String

    public init(_ description: String, kind: Kind = .cannotInspect) {
        self.kind = kind
        self.description = description
    }
}
