import Foundation
import Synchronization
import Testing
import UnderstudyAgent
import UnderstudyHarness
import UnderstudyProtocol
import UnderstudyQEMU
import UnderstudyReplica

@Suite("Device state as a delta")
struct DeviceStateDeltaTests {
    let identity = VMIdentity(id: "vm-device-delta", memorySize: 4 << 20)

    /// Checkpoints of a synthetic guest whose device state is as large as QEMU's on the test
    /// guest and changes in a few bytes between checkpoints, and once in size (a hot-plug).
    /// The backup's committed state after each session must be exactly the primary's last.
    func replicate(backupCapabilities: Capabilities) throws -> [PrimaryStatistics] {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let backup = try RunningBackup(workspace: workspace, identity: identity, capabilities: backupCapabilities)
        defer { backup.stop() }
        let source = LargeDeviceStateSource(SyntheticGuest(identity: identity, pagesPerCheckpoint: 4, mix: [.text], seed: 7),
                                            resizeAt: 12)
        var sessions: [PrimaryStatistics] = []
        for (session, count) in [20, 3].enumerated() {
            let primary = PrimaryReplicator(
                source: source,
                configuration: PrimaryConfiguration(nodeName: "primary", backup: backup.endpoint,
                                                    tls: workspace.tls(node: "primary", peer: "backup"), interval: .zero),
                logger: quietLogger)
            try primary.start()
            try primary.runCheckpoints(count: count)
            try primary.drain(timeout: .seconds(20))
            let stats = primary.statistics
            primary.stop()
            _ = backup.waitForSessionEnd(sessions: session + 1)
            #expect(backup.receiver.store.state.committedEpoch == stats.lastAcknowledgedEpoch)
            #expect(backup.receiver.store.state.deviceState == source.lastDeviceState,
                    "session \(session): the backup's device state is not the primary's")
            sessions.append(stats)
        }
        return sessions
    }

    @Test("with the capability, device state travels as small deltas and the backup holds exactly the primary's state")
    func deltas() throws {
        let sessions = try replicate(backupCapabilities: .supported)
        let first = sessions[0]
        #expect(first.checkpointsSent == 20 && first.deviceStateRawBytes == 11 * 14_662 + 9 * 15_686)
        // Two whole states (the first checkpoint, the size change), 18 deltas of a few hundred bytes.
        #expect(first.deviceStateWireBytes < 2 * (15_686 + DeviceStateCodec.headerSize) + 18 * 400,
                "\(first.deviceStateWireBytes) device-state bytes on the wire for \(first.deviceStateRawBytes)")
        #expect(first.deviceStateWireBytes > 2 * 14_662, "the first state and the resized one go whole")
        #expect(first.framingBytes > 0 && first.framingBytes < first.wireBytes)
        // A new session (catch-up or full sync): its first state goes whole again.
        let second = sessions[1]
        #expect(second.deviceStateWireBytes >= second.deviceStateRawBytes / 3,
                "\(second.deviceStateWireBytes) of \(second.deviceStateRawBytes): the first state after a reconnect is whole")
    }

    @Test("a backup without the capability gets the whole state, uncompressed")
    func peerWithoutTheCapability() throws {
        let sessions = try replicate(backupCapabilities: Capabilities.supported.subtracting(.deviceStateDelta))
        for stats in sessions {
            #expect(stats.deviceStateWireBytes == stats.deviceStateRawBytes)
        }
    }

    /// A primary offering the capability sends a delta; the backup decodes it against the
    /// checkpoint it committed before.
    @Test("a scripted delta decodes against the committed state; a lost device-state frame never commits")
    func scriptedDeltaAndLostFrame() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let backup = try RunningBackup(workspace: workspace, identity: identity)
        defer { backup.stop() }
        var rng = SplitMix64(seed: 0xDE1A)
        let first = (0..<14_662).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        var second = first
        for position in stride(from: 0, to: second.count, by: 367) { second[position] ^= 0xFF }
        var third = second
        third[5] ^= 1
        let scripted = try ScriptedPrimary(workspace: workspace, endpoint: backup.endpoint, identity: identity)
        guard case .welcome(let welcome) = try scripted.handshake(capabilities: .supported) else {
            throw ProtocolError.unexpected("no welcome")
        }
        #expect(welcome.capabilities.contains(.deviceStateDelta))
        try scripted.sync(value: 1)
        try scripted.checkpoint(epoch: 1, pages: [3], value: 2, device: DeviceStateCodec.encode(first, previous: nil))
        #expect(try scripted.receive() == .ack(epoch: 1))
        let delta = DeviceStateCodec.encode(second, previous: first)
        #expect(delta[0] == PageEncoding.lz4Delta.rawValue && delta.count < 1024)
        try scripted.checkpoint(epoch: 2, pages: [3], value: 3, device: delta)
        #expect(try scripted.receive() == .ack(epoch: 2))
        #expect(backup.waitForCommit(2))
        #expect(backup.receiver.store.state.deviceState == second)

        // Epoch 3's device-state frame is lost on the way; the summary's byte count is made to
        // agree, so that only the digest can tell.
        try scripted.send(.checkpointBegin(epoch: 3))
        let pages = try scripted.batch(epoch: 3, pages: [4], value: 4)
        try scripted.connection.send(pages)
        var digest = EpochDigest(frameChecksum: scripted.frameChecksum)
        digest.add(pages)
        digest.add(Message.deviceState(DeviceStateChunk(epoch: 3, offset: 0, data: DeviceStateCodec.encode(third, previous: second))).frame)
        try scripted.send(.checkpointEnd(ContentSummary(epoch: 3, pageCount: 1, deviceStateBytes: 0, digest: digest.value)))
        guard case .goodbye(let close) = try scripted.receive() else {
            Issue.record("the backup acknowledged a checkpoint that lost its device state")
            return
        }
        #expect(close.message.contains("checksum"), "\(close.message)")
        _ = backup.waitForSessionEnd(sessions: 1)
        #expect(backup.receiver.store.state.committedEpoch == 2)
        #expect(backup.receiver.store.state.deviceState == second)
    }
}

/// A synthetic guest with a QEMU-sized device state: 14,662 bytes of incompressible content of
/// which a few change every checkpoint, and 1,024 bytes more from checkpoint `resizeAt` on.
private final class LargeDeviceStateSource: CheckpointSource, @unchecked Sendable {
    private let guest: SyntheticGuest
    private let resizeAt: Int
    private let state: Mutex<(rng: SplitMix64, deviceState: [UInt8], captures: Int)>

    init(_ guest: SyntheticGuest, resizeAt: Int) {
        self.guest = guest
        self.resizeAt = resizeAt
        var rng = SplitMix64(seed: 0x5747E)
        let initial = (0..<14_662).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        state = Mutex((rng, initial, 0))
    }

    var lastDeviceState: [UInt8] { state.withLock { $0.deviceState } }
    var identity: VMIdentity { guest.identity }
    var memory: UnsafeRawBufferPointer { guest.memory }
    func startTracking() throws { try guest.startTracking() }
    func collectDirtyPages() throws -> [UInt64] { try guest.collectDirtyPages() }
    func capture(epoch: UInt64, resume: Bool) throws -> CapturedCheckpoint {
        let captured = try guest.capture(epoch: epoch, resume: resume)
        captured.deviceState = state.withLock { state in
            state.captures += 1
            if state.captures == resizeAt {
                state.deviceState += (0..<1024).map { _ in UInt8(truncatingIfNeeded: state.rng.next()) }
            }
            for _ in 0..<8 {
                state.deviceState[Int(state.rng.next() % UInt64(state.deviceState.count))] = UInt8(truncatingIfNeeded: state.rng.next())
            }
            return state.deviceState
        }
        return captured
    }
}
