import UnderstudyProtocol

/// The server's side of the NBD fixed-newstyle handshake, as a value with no I/O.
///
/// The I/O layer sends `greeting`, then loops: read exactly `bytesWanted` bytes, pass them to
/// `received(_:)` and do what the returned action says, until the action starts the
/// transmission phase or closes the connection. The machine knows how the client's messages are
/// framed (flags, option headers, option data), so the I/O layer never parses anything.
///
/// Supported options: NBD_OPT_GO and NBD_OPT_INFO (export size and flags, block sizes),
/// NBD_OPT_EXPORT_NAME (the old way to finish), NBD_OPT_LIST and NBD_OPT_ABORT. Every other
/// option, structured replies and metadata contexts included, is answered "unsupported", so the
/// transmission phase always uses simple replies.
public struct NBDHandshakeStateMachine: Sendable {
    public enum Action: Sendable, Equatable {
        /// Nothing to send: read `bytesWanted` more bytes.
        case receive
        /// Send these option replies, then read `bytesWanted` more bytes.
        case send([UInt8])
        /// Send this error reply, then read `bytesWanted` more bytes (the client may try again);
        /// `error` says what went wrong, for the operator: the client alone learns it otherwise.
        case refuse(send: [UInt8], error: DiskError)
        /// Send these bytes; the transmission phase starts right after them.
        case startTransmission(send: [UInt8])
        /// Send these bytes (perhaps none), then close the connection: the client aborted the
        /// handshake (`error` nil) or the handshake failed.
        case close(send: [UInt8], error: DiskError?)
    }

    enum State: Sendable, Equatable {
        case awaitingClientFlags
        case awaitingOptionHeader
        case awaitingOptionData(option: UInt32, length: Int)
        case transmission
        case closed
    }

    /// The longest option data accepted. The longest valid option, NBD_OPT_GO with a 4096-byte
    /// name, needs a few bytes more than that name; a longer one is refused rather than read, so
    /// a client cannot make the server buffer arbitrary amounts before the export is chosen.
    public static let maximumOptionLength = NBDExport.maximumNameLength + 64

    /// The server's first message: magic numbers and the handshake flags.
    public static var greeting: [UInt8] {
        var writer = WireWriter(capacity: 18)
        writer.write(NBDMagic.greeting)
        writer.write(NBDMagic.option)
        writer.write(NBDHandshakeFlags([.fixedNewstyle, .noZeroes]).rawValue)
        return writer.bytes
    }

    public let export: NBDExport
    private(set) var state: State = .awaitingClientFlags
    private var clientFlags: NBDClientFlags = []

    public init(export: NBDExport) {
        self.export = export
    }

    /// How many bytes the next call to `received(_:)` takes; 0 once the handshake is over.
    public var bytesWanted: Int {
        switch state {
        case .awaitingClientFlags: 4
        case .awaitingOptionHeader: 16
        case .awaitingOptionData(_, let length): length
        case .transmission, .closed: 0
        }
    }

    /// Takes exactly `bytesWanted` bytes from the client.
    public mutating func received(_ bytes: [UInt8]) -> Action {
        precondition(bytes.count == bytesWanted, "the handshake wants \(bytesWanted) bytes, was given \(bytes.count)")
        switch state {
        case .awaitingClientFlags:
            let flags = NBDClientFlags(rawValue: bytes.bigEndianInteger(at: 0))
            let unknown = flags.subtracting([.fixedNewstyle, .noZeroes])
            // The protocol requires closing on any flag the server did not announce.
            guard unknown.isEmpty else { return fail("unknown client flags 0x\(String(unknown.rawValue, radix: 16))") }
            clientFlags = flags
            state = .awaitingOptionHeader
            return .receive
        case .awaitingOptionHeader:
            let magic: UInt64 = bytes.bigEndianInteger(at: 0)
            let option: UInt32 = bytes.bigEndianInteger(at: 8)
            let length: UInt32 = bytes.bigEndianInteger(at: 12)
            guard magic == NBDMagic.option else {
                return fail("option magic is 0x\(String(magic, radix: 16)), expected 0x\(String(NBDMagic.option, radix: 16))")
            }
            guard length <= Self.maximumOptionLength else {
                state = .closed
                let reason = "option \(option) carries \(length) bytes of data, at most \(Self.maximumOptionLength) are accepted"
                return .close(send: Self.reply(to: option, NBDOptionReply.errorTooBig, message: reason), error: .protocolViolation(reason))
            }
            if length == 0 { return handle(option, data: []) }
            state = .awaitingOptionData(option: option, length: Int(length))
            return .receive
        case .awaitingOptionData(let option, _):
            return handle(option, data: bytes)
        case .transmission, .closed:
            return fail("handshake bytes after the handshake ended")
        }
    }

    private mutating func handle(_ option: UInt32, data: [UInt8]) -> Action {
        state = .awaitingOptionHeader
        switch option {
        case NBDOption.exportName:
            // This option cannot be answered with an error: the protocol says to close instead.
            guard export.isNamed(data) else {
                state = .closed
                return .close(send: [], error: .unknownExport(requested: String(decoding: data, as: UTF8.self), served: export.name))
            }
            state = .transmission
            var writer = WireWriter(capacity: 134)
            writer.write(export.size)
            writer.write(export.transmissionFlags.rawValue)
            if !clientFlags.contains(.noZeroes) { writer.write(bytes: repeatElement(UInt8(0), count: 124)) }
            return .startTransmission(send: writer.bytes)
        case NBDOption.abort:
            state = .closed
            return .close(send: Self.reply(to: option, NBDOptionReply.ack), error: nil)
        case NBDOption.list:
            guard data.isEmpty else { return refuse(option, NBDOptionReply.errorInvalid, .protocolViolation("NBD_OPT_LIST carries data")) }
            var server = WireWriter()
            server.write(UInt32(export.name.utf8.count))
            server.write(bytes: export.name.utf8)
            return .send(Self.reply(to: option, NBDOptionReply.server, server.bytes) + Self.reply(to: option, NBDOptionReply.ack))
        case NBDOption.info, NBDOption.go:
            return informOrGo(option, data: data)
        default:
            return .send(Self.reply(to: option, NBDOptionReply.errorUnsupported, message: "option \(option) is not supported by this server"))
        }
    }

    /// NBD_OPT_INFO and NBD_OPT_GO: name length u32, name, count u16, count info requests u16.
    /// The export and block-size items are always sent (the protocol allows unrequested ones);
    /// requests for the others (name, description) are optional to honour and are not.
    private mutating func informOrGo(_ option: UInt32, data: [UInt8]) -> Action {
        let nameLength = data.count >= 4 ? Int(data.bigEndianInteger(at: 0, as: UInt32.self)) : -1
        let countOffset = 4 + nameLength
        guard nameLength >= 0, data.count >= countOffset + 2,
              data.count == countOffset + 2 + 2 * Int(data.bigEndianInteger(at: countOffset, as: UInt16.self)) else {
            return refuse(option, NBDOptionReply.errorInvalid,
                          .protocolViolation("option \(option) data's lengths do not add up to the \(data.count) bytes sent"))
        }
        let name = Array(data[4..<countOffset])
        guard export.isNamed(name) else {
            return refuse(option, NBDOptionReply.errorUnknown, .unknownExport(requested: String(decoding: name, as: UTF8.self), served: export.name))
        }
        var exportItem = WireWriter(capacity: 12)
        exportItem.write(NBDInfo.export)
        exportItem.write(export.size)
        exportItem.write(export.transmissionFlags.rawValue)
        var blockSizeItem = WireWriter(capacity: 14)
        blockSizeItem.write(NBDInfo.blockSize)
        blockSizeItem.write(NBDExport.minimumBlockSize)
        blockSizeItem.write(NBDExport.preferredBlockSize)
        blockSizeItem.write(NBDExport.maximumPayload)
        let replies = Self.reply(to: option, NBDOptionReply.info, exportItem.bytes)
            + Self.reply(to: option, NBDOptionReply.info, blockSizeItem.bytes)
            + Self.reply(to: option, NBDOptionReply.ack)
        guard option == NBDOption.go else { return .send(replies) }
        state = .transmission
        return .startTransmission(send: replies)
    }

    /// An error reply whose message is the error's sentence.
    private func refuse(_ option: UInt32, _ type: UInt32, _ error: DiskError) -> Action {
        .refuse(send: Self.reply(to: option, type, message: error.description), error: error)
    }

    private mutating func fail(_ reason: String) -> Action {
        state = .closed
        return .close(send: [], error: .protocolViolation(reason))
    }

    /// One option reply: magic, the option it answers, reply type, payload length, payload.
    static func reply(to option: UInt32, _ type: UInt32, _ payload: [UInt8] = []) -> [UInt8] {
        var writer = WireWriter(capacity: 20 + payload.count)
        writer.write(NBDMagic.optionReply)
        writer.write(option)
        writer.write(type)
        writer.write(UInt32(payload.count))
        writer.write(bytes: payload)
        return writer.bytes
    }

    /// An error reply carrying a message for the client's user.
    static func reply(to option: UInt32, _ type: UInt32, message: String) -> [UInt8] {
        reply(to: option, type, Array(message.utf8))
    }
}
