/// Failures of the node as a whole.
public enum AgentError: Error, CustomStringConvertible {
    case fenced(String)

    public var description: String {
        switch self {
        case .fenced(let message): message
        }
    }
}
