#if canImport(Glibc)
import Glibc
#endif

/// The commands of the transmission phase this server executes. Others (CACHE, BLOCK_STATUS)
/// are never advertised and are answered EINVAL like any unknown command.
public enum NBDCommand: UInt16, Sendable {
    case read = 0
    /// The data follows the request header.
    case write = 1
    /// The client ends the session; no reply.
    case disconnect = 2
    /// Make every change answered so far durable.
    case flush = 3
    /// Discard a range; this server punches a hole, so it reads as zeroes afterwards.
    case trim = 4
    /// Make a range read as zeroes, without data on the wire.
    case writeZeroes = 6
}
