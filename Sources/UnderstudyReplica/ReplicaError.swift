import Foundation
import UnderstudyDisk
import UnderstudyProtocol

/// Why the replica store could not do what was asked. Nothing is half-applied when one is thrown:
/// the committed epoch stays the one before.
public enum ReplicaError: Error, Sendable, Equatable, CustomStringConvertible {
    case io(operation: String, path: String, errno: Int32)
    /// Another process holds the replica directory.
    case locked(String)
    /// The directory holds the replica of a different VM.
    case identityMismatch(String)
    /// A state file exists but is damaged.
    case corrupt(String)
    /// The staged content cannot be applied (bad page data, duplicate page).
    case invalidContent(ProtocolError)
    /// The operation needs a state the replica is not in (e.g. activation before any commit).
    case notReady(String)
    /// The replica disk could not be read or written.
    case disk(DiskError)

    public var description: String {
        switch self {
        case .io(let operation, let path, let code): "\(operation) \(path): \(String(cString: strerror(code)))"
        case .locked(let what): what
        case .identityMismatch(let what): what
        case .corrupt(let what): "replica state is damaged: \(what)"
        case .invalidContent(let error): "staged checkpoint cannot be applied: \(error)"
        case .notReady(let what): what
        case .disk(let error): "replica disk: \(error)"
        }
    }
}
