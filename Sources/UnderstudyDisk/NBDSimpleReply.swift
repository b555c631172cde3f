import UnderstudyProtocol

/// The reply header to a request: error code (0 for success) and the request's handle. A
/// successful READ's data follows it.
public struct NBDSimpleReply: Sendable, Equatable {
    public static let headerSize = 16

    /// nil for success.
    public var error: NBDError?
    /// The handle of the request answered.
    public var handle: UInt64

    public init(error: NBDError? = nil, handle: UInt64) {
        self.error = error
        self.handle = handle
    }

    /// The 16 header bytes.
    public var bytes: [UInt8] {
        var writer = WireWriter(capacity: Self.headerSize)
        writer.write(NBDMagic.simpleReply)
        writer.write(error?.rawValue ?? 0)
        writer.write(handle)
        return writer.bytes
    }
}
