import UnderstudySystem
#if canImport(Glibc)
import Glibc
#endif

/// What can go wrong serving the guest disk, each with a sentence an operator can act on.
public enum DiskError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The disk image is not there.
    case missingImage(path: String)
    /// The disk image exists but cannot be served (not a file or block device, empty).
    case invalidImage(path: String, reason: String)
    /// A system call on the disk image failed.
    case io(operation: String, path: String, errno: Int32)
    /// An NBD connection's socket failed.
    case socket(operation: String, path: String, errno: Int32)
    /// The NBD socket cannot be listened on (in use, not a socket, a failed call).
    case listen(UnixSocket.ListenError)
    /// The server's settings cannot work (an export name too long for NBD, a socket path too long).
    case invalidConfiguration(String)
    /// An NBD client asked for an export this server does not serve.
    case unknownExport(requested: String, served: String)
    /// An NBD client broke the protocol; the server closed its connection.
    case protocolViolation(String)
    /// More than `limit` bytes were written to the disk between two checkpoints: the recorded
    /// writes were dropped, so the backup must copy the disk in full.
    case recordOverflow(limit: Int)

    public var description: String {
        switch self {
        case .missingImage(let path):
            "disk image \(path) does not exist: create it first (qemu-img create -f raw \(path) SIZE) or fix the configured path"
        case .invalidImage(let path, let reason): "disk image \(path) cannot be served: \(reason)"
        case .io(let operation, let path, let code): "\(operation) on disk image \(path) failed: \(String(cString: strerror(code))) (errno \(code))"
        case .socket(let operation, let path, let code): "\(operation) NBD socket \(path) failed: \(String(cString: strerror(code))) (errno \(code))"
        case .listen(let error): "cannot serve the disk over NBD: \(error)"
        case .invalidConfiguration(let what): "invalid disk configuration: \(what)"
        case .unknownExport(let requested, let served):
            "an NBD client asked for export \"\(requested)\", but this server serves \"\(served)\": make the export names agree (QEMU's -blockdev export=)"
        case .protocolViolation(let what): "NBD client broke the protocol: \(what)"
        case .recordOverflow(let limit):
            "the guest wrote more than \(limit) bytes to its disk since the last acknowledged checkpoint: the recorded writes were dropped, and the backup resynchronises in full"
        }
    }
}
