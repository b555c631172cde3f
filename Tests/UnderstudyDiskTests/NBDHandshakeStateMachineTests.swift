import Testing
@testable import UnderstudyDisk

@Suite("NBDHandshakeStateMachine")
struct NBDHandshakeStateMachineTests {
    static let export = NBDExport(name: "disk", size: 1 << 30, isReadOnly: false)
    /// HAS_FLAGS | SEND_FLUSH | SEND_FUA | SEND_TRIM | SEND_WRITE_ZEROES
    static let flags: UInt16 = 0x6D

    /// A machine that has accepted the client flags and waits for the first option.
    static func negotiating(export: NBDExport = export, clientFlags: UInt32 = 3) -> NBDHandshakeStateMachine {
        var machine = NBDHandshakeStateMachine(export: export)
        #expect(machine.bytesWanted == 4)
        #expect(machine.received(bigEndian(clientFlags)) == .receive)
        #expect(machine.bytesWanted == 16)
        return machine
    }

    /// Feeds a whole option (header, then data when there is some) the way the I/O layer would:
    /// `bytesWanted` at a time. Returns the last action.
    static func send(_ bytes: [UInt8], to machine: inout NBDHandshakeStateMachine,
                     sourceLocation: SourceLocation = #_sourceLocation) -> NBDHandshakeStateMachine.Action {
        var rest = bytes[...]
        var action = NBDHandshakeStateMachine.Action.receive
        while !rest.isEmpty {
            let wanted = machine.bytesWanted
            guard wanted > 0, wanted <= rest.count else {
                Issue.record("machine wants \(wanted) bytes, \(rest.count) left", sourceLocation: sourceLocation)
                return action
            }
            action = machine.received(Array(rest.prefix(wanted)))
            rest = rest.dropFirst(wanted)
        }
        return action
    }

    /// The replies of a `.send` action; records an issue for any other action.
    static func sent(_ action: NBDHandshakeStateMachine.Action, sourceLocation: SourceLocation = #_sourceLocation) -> [OptionReply] {
        guard case .send(let bytes) = action else {
            Issue.record("expected .send, got \(action)", sourceLocation: sourceLocation)
            return []
        }
        return optionReplies(bytes, sourceLocation: sourceLocation)
    }

    static func exportInfo(size: UInt64, flags: UInt16) -> [UInt8] { bigEndian(NBDInfo.export) + bigEndian(size) + bigEndian(flags) }
    static let blockSizeInfo = bigEndian(NBDInfo.blockSize) + bigEndian(UInt32(1)) + bigEndian(UInt32(4096)) + bigEndian(UInt32(32 << 20))

    @Test func greetingAnnouncesFixedNewstyleAndNoZeroes() {
        #expect(NBDHandshakeStateMachine.greeting == Array("NBDMAGICIHAVEOPT".utf8) + [0, 3])
    }

    @Test func goAnswersExportInfoAndBlockSizesThenStartsTransmission() {
        var machine = Self.negotiating()
        let data = goData(name: "disk")
        #expect(machine.received(Array(optionBytes(NBDOption.go, data).prefix(16))) == .receive)
        #expect(machine.bytesWanted == data.count)
        guard case .startTransmission(let bytes) = machine.received(data) else {
            Issue.record("GO did not start transmission")
            return
        }
        #expect(optionReplies(bytes) == [
            OptionReply(option: NBDOption.go, type: NBDOptionReply.info, payload: Self.exportInfo(size: 1 << 30, flags: Self.flags)),
            OptionReply(option: NBDOption.go, type: NBDOptionReply.info, payload: Self.blockSizeInfo),
            OptionReply(option: NBDOption.go, type: NBDOptionReply.ack, payload: []),
        ])
        #expect(machine.bytesWanted == 0)
        #expect(machine.state == .transmission)
    }

    @Test func readOnlyExportsAnnounceIt() {
        var machine = Self.negotiating(export: NBDExport(name: "disk", size: 4096, isReadOnly: true))
        guard case .startTransmission(let bytes) = Self.send(optionBytes(NBDOption.go, goData(name: "disk", requests: [])), to: &machine) else {
            Issue.record("GO did not start transmission")
            return
        }
        #expect(optionReplies(bytes).first?.payload == Self.exportInfo(size: 4096, flags: Self.flags | 0x02))
    }

    @Test func infoAnswersLikeGoButStaysInTheHandshake() {
        var machine = Self.negotiating()
        let replies = Self.sent(Self.send(optionBytes(NBDOption.info, goData(name: "disk")), to: &machine))
        #expect(replies.map(\.type) == [NBDOptionReply.info, NBDOptionReply.info, NBDOptionReply.ack])
        #expect(replies.allSatisfy { $0.option == NBDOption.info })
        #expect(machine.bytesWanted == 16)
        guard case .startTransmission = Self.send(optionBytes(NBDOption.go, goData(name: "disk")), to: &machine) else {
            Issue.record("GO after INFO did not start transmission")
            return
        }
    }

    @Test func theEmptyNameIsTheDefaultExport() {
        var machine = Self.negotiating()
        guard case .startTransmission = Self.send(optionBytes(NBDOption.go, goData(name: "")), to: &machine) else {
            Issue.record("GO for the default export did not start transmission")
            return
        }
    }

    @Test(arguments: [(UInt32(3), 10), (UInt32(1), 134)])
    func exportNameEndsTheHandshakeWithZeroesUnlessRefused(clientFlags: UInt32, replyLength: Int) {
        var machine = Self.negotiating(clientFlags: clientFlags)
        let action = Self.send(optionBytes(NBDOption.exportName, Array("disk".utf8)), to: &machine)
        let expected = bigEndian(UInt64(1 << 30)) + bigEndian(Self.flags) + [UInt8](repeating: 0, count: replyLength - 10)
        #expect(action == .startTransmission(send: expected))
        #expect(machine.state == .transmission)
    }

    @Test func exportNameForAnUnknownExportCloses() {
        var machine = Self.negotiating()
        let action = Self.send(optionBytes(NBDOption.exportName, Array("other".utf8)), to: &machine)
        #expect(action == .close(send: [], error: .unknownExport(requested: "other", served: "disk")))
        #expect(machine.state == .closed)
        #expect(machine.bytesWanted == 0)
    }

    /// The replies of a `.refuse` action and its error; records an issue for any other action.
    static func refused(_ action: NBDHandshakeStateMachine.Action, sourceLocation: SourceLocation = #_sourceLocation) -> ([OptionReply], DiskError?) {
        guard case .refuse(let bytes, let error) = action else {
            Issue.record("expected .refuse, got \(action)", sourceLocation: sourceLocation)
            return ([], nil)
        }
        return (optionReplies(bytes, sourceLocation: sourceLocation), error)
    }

    @Test func goForAnUnknownExportIsAnsweredAndTheClientMayRetry() {
        var machine = Self.negotiating()
        let (replies, error) = Self.refused(Self.send(optionBytes(NBDOption.go, goData(name: "other")), to: &machine))
        #expect(replies.map(\.type) == [NBDOptionReply.errorUnknown])
        #expect(error == .unknownExport(requested: "other", served: "disk"))
        #expect(replies.first?.message == error?.description)
        #expect(machine.bytesWanted == 16)
        guard case .startTransmission = Self.send(optionBytes(NBDOption.go, goData(name: "disk")), to: &machine) else {
            Issue.record("GO did not start transmission after an unknown export")
            return
        }
    }

    @Test(arguments: [
        (UInt32(5), "STARTTLS"), (8, "STRUCTURED_REPLY"), (9, "LIST_META_CONTEXT"), (10, "SET_META_CONTEXT"), (4, "PEEK_EXPORT"), (0x7777, "unknown"),
    ])
    func otherOptionsAreUnsupported(option: UInt32, name: String) {
        var machine = Self.negotiating()
        let data: [UInt8] = option == 10 ? bigEndian(UInt32(4)) + Array("disk".utf8) + bigEndian(UInt32(0)) : []
        let replies = Self.sent(Self.send(optionBytes(option, data), to: &machine))
        #expect(replies.map(\.type) == [NBDOptionReply.errorUnsupported], "\(name)")
        #expect(replies.first?.option == option)
        #expect(machine.bytesWanted == 16, "the handshake goes on after \(name)")
    }

    @Test func listNamesTheExport() {
        var machine = Self.negotiating()
        let replies = Self.sent(Self.send(optionBytes(NBDOption.list), to: &machine))
        #expect(replies == [
            OptionReply(option: NBDOption.list, type: NBDOptionReply.server, payload: bigEndian(UInt32(4)) + Array("disk".utf8)),
            OptionReply(option: NBDOption.list, type: NBDOptionReply.ack, payload: []),
        ])
        let (invalid, error) = Self.refused(Self.send(optionBytes(NBDOption.list, [1]), to: &machine))
        #expect(invalid.map(\.type) == [NBDOptionReply.errorInvalid])
        #expect(error == .protocolViolation("NBD_OPT_LIST carries data"))
    }

    @Test func abortIsAcknowledgedAndCloses() {
        var machine = Self.negotiating()
        let action = Self.send(optionBytes(NBDOption.abort), to: &machine)
        #expect(action == .close(send: NBDHandshakeStateMachine.reply(to: NBDOption.abort, NBDOptionReply.ack), error: nil))
        #expect(machine.state == .closed)
    }

    @Test(arguments: [4, 1 << 2 | 1, 1 << 31, 0xFFFF_FFFF] as [UInt32])
    func unknownClientFlagsClose(flags: UInt32) {
        var machine = NBDHandshakeStateMachine(export: Self.export)
        guard case .close(let bytes, let error) = machine.received(bigEndian(flags)) else {
            Issue.record("unknown client flags 0x\(String(flags, radix: 16)) were accepted")
            return
        }
        #expect(bytes.isEmpty)
        #expect(error?.description.contains("unknown client flags") == true)
        #expect(machine.state == .closed)
    }

    @Test func clientsWithoutFixedNewstyleMayStillUseExportName() {
        var machine = Self.negotiating(clientFlags: 0)
        guard case .startTransmission(let bytes) = Self.send(optionBytes(NBDOption.exportName, Array("disk".utf8)), to: &machine) else {
            Issue.record("EXPORT_NAME from a plain newstyle client did not start transmission")
            return
        }
        #expect(bytes.count == 134)
    }

    @Test func wrongOptionMagicCloses() {
        var machine = Self.negotiating()
        let action = machine.received(optionBytes(NBDOption.go, magic: 0x4948_4156_454F_5055))
        guard case .close(let bytes, let error) = action else {
            Issue.record("wrong option magic was accepted: \(action)")
            return
        }
        #expect(bytes.isEmpty)
        #expect(error?.description.contains("option magic") == true)
    }

    @Test func oversizedOptionsAreRefusedWithoutReadingThem() {
        var machine = Self.negotiating()
        let header = bigEndian(NBDMagic.option) + bigEndian(NBDOption.go) + bigEndian(UInt32(64 << 20))
        guard case .close(let bytes, let error) = machine.received(header) else {
            Issue.record("a 64 MiB option was accepted")
            return
        }
        let replies = optionReplies(bytes)
        #expect(replies.map(\.type) == [NBDOptionReply.errorTooBig])
        #expect(replies.first?.message.contains("at most \(NBDHandshakeStateMachine.maximumOptionLength)") == true)
        #expect(error == .protocolViolation("option 7 carries 67108864 bytes of data, at most 4160 are accepted"))
        #expect(machine.bytesWanted == 0, "the data is never read")
    }

    @Test func theLongestValidNameFits() {
        var machine = Self.negotiating(export: NBDExport(name: String(repeating: "n", count: 4096), size: 512, isReadOnly: false))
        guard case .startTransmission = Self.send(optionBytes(NBDOption.go, goData(name: String(repeating: "n", count: 4096))), to: &machine) else {
            Issue.record("a 4096-byte export name did not fit")
            return
        }
    }

    static let malformedGoData: [(String, [UInt8])] = {
        let name = Array("disk".utf8)
        let nameLength = bigEndian(UInt32(4))
        return [
            ("name length past the end", bigEndian(UInt32(10)) + name),
            ("no request count", nameLength + name),
            ("request count past the end", nameLength + name + bigEndian(UInt16(2)) + bigEndian(UInt16(3))),
            ("trailing bytes", goData(name: "disk") + [0]),
            ("shorter than a name length", [0, 0]),
        ]
    }()

    @Test(arguments: malformedGoData)
    func truncatedOrPaddedGoDataIsInvalid(what: String, data: [UInt8]) {
        var machine = Self.negotiating()
        let (replies, error) = Self.refused(Self.send(optionBytes(NBDOption.go, data), to: &machine))
        #expect(replies.map(\.type) == [NBDOptionReply.errorInvalid], "\(what)")
        #expect(error == .protocolViolation("option 7 data's lengths do not add up to the \(data.count) bytes sent"))
        #expect(machine.bytesWanted == 16, "the handshake goes on after \(what)")
    }

    @Test func bytesAfterTheEndAreRefused() {
        var machine = Self.negotiating()
        _ = Self.send(optionBytes(NBDOption.abort), to: &machine)
        guard case .close(_, let error) = machine.received([]) else {
            Issue.record("a closed handshake accepted more input")
            return
        }
        #expect(error != nil)
    }
}
