#if canImport(Glibc)
import Glibc
#endif

/// The error codes a reply can carry. The protocol fixes these values; they happen to match
/// Linux errno.
public enum NBDError: UInt32, Sendable {
    /// EPERM: a change to a read-only export.
    case notPermitted = 1
    /// EIO: the image could not be read or changed.
    case ioError = 5
    /// EINVAL: an unknown command or flag, or a range outside the export or too long.
    case invalidArgument = 22
    /// ENOSPC: a write past the end of the export, or a full host file system.
    case noSpace = 28

    /// The protocol's code for a failed system call: the spec asks for ENOSPC on EDQUOT and EFBIG
    /// too, and anything without its own code is an I/O error.
    public init(errno code: Int32) {
        switch code {
        case EPERM, EACCES, EROFS: self = .notPermitted
        case EINVAL: self = .invalidArgument
        case ENOSPC, EDQUOT, EFBIG: self = .noSpace
        default: self = .ioError
        }
    }
}
