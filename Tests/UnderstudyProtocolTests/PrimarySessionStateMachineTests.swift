import PropertyBased
import Testing
@testable import UnderstudyProtocol

@Suite("PrimarySessionStateMachine")
struct PrimarySessionStateMachineTests {
    static let identity = Fixtures.identity

    static func welcome(_ capabilities: Capabilities = .supported, committed: UInt64 = 0, version: UInt16 = understudyProtocolVersion) -> Frame {
        Message.welcome(Welcome(version: version, capabilities: capabilities, committedEpoch: committed)).frame
    }

    static func ack(_ epoch: UInt64) -> Frame { Message.ack(epoch: epoch).frame }

    /// A primary that finished its sync, with window `window`.
    static func protecting(window: Int, firstEpoch: UInt64 = 1) -> PrimarySessionStateMachine {
        var primary = PrimarySessionStateMachine(identity: identity, maxEpochsInFlight: window, firstEpoch: firstEpoch)
        #expect(primary.received(welcome()) == .startSync(.supported, backupCommittedEpoch: 0))
        primary.syncFinished()
        #expect(primary.isProtecting)
        return primary
    }

    static func expectClose(_ action: PrimarySessionStateMachine.Action, _ kind: String, containing text: String? = nil,
                            _ primary: PrimarySessionStateMachine, sourceLocation: SourceLocation = #_sourceLocation) {
        guard let error = action.closeError else {
            Issue.record("expected .close(\(kind)), got \(action)", sourceLocation: sourceLocation)
            return
        }
        #expect(error.kind == kind, "\(error)", sourceLocation: sourceLocation)
        if let text { #expect(error.description.contains(text), "\(error.description)", sourceLocation: sourceLocation) }
        #expect(primary.isClosed, sourceLocation: sourceLocation)
        #expect(!primary.canSendCheckpoint, sourceLocation: sourceLocation)
    }

    @Test("WELCOME starts the sync with the agreed capabilities")
    func welcomeStartsSync() {
        var primary = PrimarySessionStateMachine(identity: Self.identity, maxEpochsInFlight: 2)
        #expect(!primary.isProtecting && !primary.canSendCheckpoint && !primary.isClosed)
        #expect(primary.nextEpoch == 1)
        #expect(primary.received(Self.welcome([.lz4Pages, .diskWrites], committed: 17)) == .startSync([.lz4Pages, .diskWrites], backupCommittedEpoch: 17))
        #expect(!primary.isProtecting)
        #expect(!primary.canSendCheckpoint, "no checkpoint before the sync is finished")
        // Heartbeats during the sync.
        #expect(primary.received(Message.heartbeat(Heartbeat(sequence: 3, senderTime: 4)).frame) == .heartbeat(Heartbeat(sequence: 3, senderTime: 4)))
        primary.syncFinished()
        #expect(primary.isProtecting && primary.canSendCheckpoint)
        #expect(primary.inFlight == [] && primary.lastAcknowledgedEpoch == nil)
    }

    @Test("a heartbeat echo is a round trip when heartbeat-echo was agreed, a protocol error otherwise")
    func heartbeatEcho() {
        let echo = Message.heartbeatEcho(Heartbeat(sequence: 9, senderTime: 1234)).frame
        var primary = Self.protecting(window: 2)
        #expect(primary.agreedCapabilities == .supported)
        #expect(primary.received(echo) == .heartbeatEcho(Heartbeat(sequence: 9, senderTime: 1234)))
        #expect(primary.isProtecting)

        var old = PrimarySessionStateMachine(identity: Self.identity, maxEpochsInFlight: 2)
        let withoutEcho = Capabilities.supported.subtracting(.heartbeatEcho)
        #expect(old.received(Self.welcome(withoutEcho)) == .startSync(withoutEcho, backupCommittedEpoch: 0))
        Self.expectClose(old.received(echo), "unexpected", containing: "heartbeat-echo", old)
    }

    @Test("WELCOME of another version closes with versionMismatch")
    func welcomeOtherVersion() {
        var primary = PrimarySessionStateMachine(identity: Self.identity, maxEpochsInFlight: 2)
        let action = primary.received(Self.welcome(version: 3))
        #expect(action == .close(.versionMismatch(local: 1, remote: 3)))
        #expect(action.closeError?.description.contains("version 1") == true && action.closeError?.description.contains("version 3") == true)
        #expect(primary.isClosed)
    }

    @Test("REJECT during the handshake is peerClosed with the backup's reason")
    func reject() {
        var primary = PrimarySessionStateMachine(identity: Self.identity, maxEpochsInFlight: 2)
        let close = SessionClose(code: .identityMismatch, message: "VM identity mismatch: memory size is 1, expected 2")
        #expect(primary.received(Message.reject(close).frame) == .peerClosed(close))
        #expect(primary.isClosed && !primary.canSendCheckpoint)
        #expect(primary.received(Self.welcome()) == .close(.unexpected("welcome after the session ended")))
    }

    @Test("REJECT after the handshake is a protocol error")
    func lateReject() {
        var primary = Self.protecting(window: 2)
        Self.expectClose(primary.received(Message.reject(SessionClose(code: .busy, message: "")).frame), "unexpected", containing: "reject", primary)
    }

    @Test("frames other than WELCOME, REJECT or GOODBYE before WELCOME close the session")
    func framesBeforeWelcome() throws {
        for (message, type) in try MessageRoundTripTests.everyMessage() where ![.welcome, .reject, .goodbye].contains(type) {
            var primary = PrimarySessionStateMachine(identity: Self.identity, maxEpochsInFlight: 2)
            let action = primary.received(message.frame)
            #expect(action == .close(.unexpected("\(type) before WELCOME")), "\(type)")
            #expect(primary.isClosed)
        }
    }

    @Test("GOODBYE in every state is peerClosed", arguments: [0, 1, 2])
    func goodbye(stage: Int) {
        var primary = PrimarySessionStateMachine(identity: Self.identity, maxEpochsInFlight: 2)
        if stage >= 1 { _ = primary.received(Self.welcome()) }
        if stage >= 2 { primary.syncFinished(); primary.checkpointSent(1) }
        let close = SessionClose(code: .internalError, message: "disk full")
        #expect(primary.received(Message.goodbye(close).frame) == .peerClosed(close))
        #expect(primary.isClosed && !primary.canSendCheckpoint)
    }

    @Test("the window: canSendCheckpoint is false at maxEpochsInFlight until an ACK", arguments: [1, 2, 3, 8])
    func window(size: Int) {
        var primary = Self.protecting(window: size)
        for epoch in UInt64(1)...UInt64(size) {
            #expect(primary.canSendCheckpoint, "epoch \(epoch) of window \(size)")
            #expect(primary.nextEpoch == epoch)
            primary.checkpointSent(epoch)
            #expect(primary.lastSentEpoch == epoch)
        }
        #expect(!primary.canSendCheckpoint, "window of \(size) is full")
        #expect(primary.inFlight == Array(1...UInt64(size)))
        #expect(primary.received(Self.ack(1)) == .release(throughEpoch: 1))
        #expect(primary.canSendCheckpoint)
        #expect(primary.inFlight == Array((UInt64(1)...UInt64(size)).dropFirst()))
        primary.checkpointSent(UInt64(size) + 1)
        #expect(!primary.canSendCheckpoint)
        #expect(primary.lastAcknowledgedEpoch == 1)
    }

    @Test("ACKs are cumulative")
    func cumulativeAck() {
        var primary = Self.protecting(window: 5)
        for epoch in UInt64(1)...5 { primary.checkpointSent(epoch) }
        #expect(primary.received(Self.ack(3)) == .release(throughEpoch: 3))
        #expect(primary.inFlight == [4, 5])
        #expect(primary.lastAcknowledgedEpoch == 3)
        #expect(primary.canSendCheckpoint)
        primary.checkpointSent(6)
        primary.checkpointSent(7)
        #expect(primary.inFlight == [4, 5, 6, 7])
        #expect(primary.received(Message.heartbeat(Heartbeat(sequence: 1, senderTime: 1)).frame) == .heartbeat(Heartbeat(sequence: 1, senderTime: 1)))
        #expect(primary.received(Self.ack(7)) == .release(throughEpoch: 7))
        #expect(primary.inFlight == [])
        #expect(primary.lastAcknowledgedEpoch == 7)
        #expect(primary.nextEpoch == 8)
    }

    @Test("ACK for an epoch never sent closes with a clear message")
    func ackNeverSent() {
        var primary = Self.protecting(window: 4)
        primary.checkpointSent(1)
        primary.checkpointSent(2)
        Self.expectClose(primary.received(Self.ack(3)), "unexpected", containing: "ACK for epoch 3, which was never sent", primary)
        #expect(primary.lastAcknowledgedEpoch == nil)
        // Nothing in flight at all.
        var idle = Self.protecting(window: 4)
        Self.expectClose(idle.received(Self.ack(1)), "unexpected", containing: "ACK for epoch 1, which was never sent", idle)
        // A session that starts at epoch 100 never sent epoch 50.
        var resumed = Self.protecting(window: 4, firstEpoch: 100)
        #expect(resumed.nextEpoch == 100)
        resumed.checkpointSent(100)
        Self.expectClose(resumed.received(Self.ack(50)), "unexpected", containing: "never sent", resumed)
    }

    @Test("ACK for an epoch already acknowledged closes with a clear message")
    func ackAlreadyAcked() {
        var primary = Self.protecting(window: 4)
        for epoch in UInt64(1)...3 { primary.checkpointSent(epoch) }
        #expect(primary.received(Self.ack(2)) == .release(throughEpoch: 2))
        var twice = primary
        Self.expectClose(twice.received(Self.ack(2)), "unexpected", containing: "ACK for epoch 2, which was already acknowledged", twice)
        var older = primary
        Self.expectClose(older.received(Self.ack(1)), "unexpected", containing: "ACK for epoch 1, which was already acknowledged", older)
        #expect(primary.received(Self.ack(3)) == .release(throughEpoch: 3))
    }

    @Test("ACK for epoch 0 (never sent) says so")
    func ackZero() {
        var primary = Self.protecting(window: 4)
        primary.checkpointSent(1)
        Self.expectClose(primary.received(Self.ack(0)), "unexpected", containing: "never sent", primary)
    }

    @Test("random send/ACK sequences agree with a model of the window")
    func modelCheck() async {
        await propertyCheck(count: 200, input: Gen.int(in: 1...6), Gen.int(in: 0...40).array(of: 1...80)) { window, ops in
            var primary = Self.protecting(window: window)
            var model: [UInt64] = []
            var lastAcknowledged: UInt64?
            var next: UInt64 = 1
            for op in ops {
                switch op {
                case 0..<20:
                    #expect(primary.canSendCheckpoint == (model.count < window))
                    if model.count < window {
                        #expect(primary.nextEpoch == next)
                        primary.checkpointSent(next)
                        model.append(next)
                        next += 1
                    }
                case 20..<35 where !model.isEmpty:
                    let epoch = model[op % model.count]
                    #expect(primary.received(Self.ack(epoch)) == .release(throughEpoch: epoch))
                    model.removeFirst(model.firstIndex(of: epoch)! + 1)
                    lastAcknowledged = epoch
                default:
                    // An epoch not in flight: already acknowledged or never sent.
                    let epoch = op % 2 == 0 ? (lastAcknowledged ?? 1) : next + UInt64(op % 3)
                    guard !model.contains(epoch) else { continue }
                    let action = primary.received(Self.ack(epoch))
                    let detail = lastAcknowledged.map { epoch <= $0 } == true ? "already acknowledged" : "never sent"
                    Self.expectClose(action, "unexpected", containing: "ACK for epoch \(epoch), which was \(detail)", primary)
                    return
                }
                #expect(primary.inFlight == model)
                #expect(primary.lastAcknowledgedEpoch == lastAcknowledged)
                #expect(primary.lastSentEpoch == next - 1)
            }
        }
    }

    @Test("ACK before the sync finished closes the session")
    func ackDuringSync() {
        var primary = PrimarySessionStateMachine(identity: Self.identity, maxEpochsInFlight: 2)
        _ = primary.received(Self.welcome())
        Self.expectClose(primary.received(Self.ack(1)), "unexpected", containing: "ack while syncing", primary)
    }

    @Test("frames only a backup receives close the session", arguments: [FrameType.hello, .welcome, .syncBegin, .pages, .checkpointEnd, .deviceState, .diskWrites])
    func primaryBoundFramesOnly(type: FrameType) throws {
        let message = try MessageRoundTripTests.everyMessage().first { $0.1 == type }!.0
        var primary = Self.protecting(window: 2)
        primary.checkpointSent(1)
        Self.expectClose(primary.received(message.frame), "unexpected", containing: "\(type) while protecting", primary)
        #expect(primary.received(Self.ack(1)) == .close(.unexpected("ack after the session ended")))
    }

    @Test("malformed frames close the session with the decoding error")
    func malformed() {
        var primary = Self.protecting(window: 2)
        let short = rawFrame(.ack) { $0.write(UInt32(1)) }
        #expect(primary.received(short) == .close(.truncated("ack: needs 8 more bytes at offset 5, has 4")))
        #expect(primary.isClosed)
    }

    @Test("abort closes")
    func abort() {
        var primary = Self.protecting(window: 2)
        primary.abort()
        #expect(primary.isClosed && !primary.canSendCheckpoint && !primary.isProtecting)
    }

    @Test("checkpointSent must follow nextEpoch")
    func checkpointOutOfTurn() async {
        await #expect(processExitsWith: .failure) {
            var primary = PrimarySessionStateMachine(identity: VMIdentity(id: "vm", memorySize: 4096), maxEpochsInFlight: 4)
            _ = primary.received(Message.welcome(Welcome(capabilities: [], committedEpoch: 0)).frame)
            primary.syncFinished()
            primary.checkpointSent(2) // nextEpoch is 1
        }
        await #expect(processExitsWith: .failure) {
            var primary = PrimarySessionStateMachine(identity: VMIdentity(id: "vm", memorySize: 4096), maxEpochsInFlight: 1)
            _ = primary.received(Message.welcome(Welcome(capabilities: [], committedEpoch: 0)).frame)
            primary.syncFinished()
            primary.checkpointSent(1)
            primary.checkpointSent(2) // window of 1 is full
        }
        await #expect(processExitsWith: .failure) {
            var primary = PrimarySessionStateMachine(identity: VMIdentity(id: "vm", memorySize: 4096), maxEpochsInFlight: 1)
            primary.checkpointSent(1) // before WELCOME
        }
    }
}
