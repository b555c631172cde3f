import UnderstudyProtocol

/// One request of the transmission phase, as its 28-byte header says. A WRITE's data follows
/// the header on the wire and is not part of this value.
public struct NBDRequest: Sendable, Equatable {
    public static let headerSize = 28

    public var flags: NBDCommandFlags
    /// The command code as sent; `command` is nil for codes this server does not execute.
    public var type: UInt16
    /// Chosen by the client and echoed in the reply.
    public var handle: UInt64
    /// Where the range starts, in bytes from the start of the export.
    public var offset: UInt64
    /// The range's length in bytes (for WRITE, also the length of the data that follows).
    public var length: UInt32

    /// A request with any command code, known or not.
    public init(flags: NBDCommandFlags = [], type: UInt16, handle: UInt64, offset: UInt64, length: UInt32) {
        self.flags = flags
        self.type = type
        self.handle = handle
        self.offset = offset
        self.length = length
    }

    /// A request for one of the commands this server executes.
    public init(_ command: NBDCommand, flags: NBDCommandFlags = [], handle: UInt64, offset: UInt64, length: UInt32) {
        self.init(flags: flags, type: command.rawValue, handle: handle, offset: offset, length: length)
    }

    /// Parses a request header. A wrong magic number or size means the stream is out of step
    /// with the client: nothing after it can be trusted, so the connection must close.
    public init(header: [UInt8]) throws(DiskError) {
        guard header.count == Self.headerSize else {
            throw .protocolViolation("a request header has \(Self.headerSize) bytes, got \(header.count)")
        }
        let magic: UInt32 = header.bigEndianInteger(at: 0)
        guard magic == NBDMagic.request else {
            throw .protocolViolation("request magic is 0x\(String(magic, radix: 16)), expected 0x\(String(NBDMagic.request, radix: 16))")
        }
        flags = NBDCommandFlags(rawValue: header.bigEndianInteger(at: 4))
        type = header.bigEndianInteger(at: 6)
        handle = header.bigEndianInteger(at: 8)
        offset = header.bigEndianInteger(at: 16)
        length = header.bigEndianInteger(at: 24)
    }

    /// The command, nil when the code is not one this server executes.
    public var command: NBDCommand? { NBDCommand(rawValue: type) }
}
