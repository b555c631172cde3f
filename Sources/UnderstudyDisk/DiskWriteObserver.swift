import Synchronization
import UnderstudyProtocol

/// Told about every change a disk server applies to its image.
///
/// Ordering rule: the server calls these after the change reached its image and *before* it
/// replies to the guest. QMP `stop` waits for the replies of all requests in flight, so once it
/// has returned every change of the epoch has been reported, and sealing then is complete.
public protocol DiskWriteObserver: AnyObject, Sendable {
    /// Bytes written or a range zeroed, at `offset` of the image.
    func diskChanged(offset: UInt64, data: DiskWriteData)
    /// Every change reported so far is durable on the local image.
    func diskFlushed()
}
