import Testing
@testable import UnderstudyProtocol

@Suite("BackupSessionStateMachine")
struct BackupSessionStateMachineTests {
    static let identity = Fixtures.identity
    static let pageSize = Int(Fixtures.identity.pageSize)

    /// A backup after a successful handshake.
    static func welcomed(capabilities: Capabilities = .supported, committedEpoch: UInt64 = 0) -> BackupSessionStateMachine {
        var backup = BackupSessionStateMachine(identity: identity, capabilities: capabilities, committedEpoch: committedEpoch)
        let action = backup.received(Fixtures.hello())
        #expect(action == .send(.welcome(Welcome(capabilities: capabilities, committedEpoch: committedEpoch))))
        return backup
    }

    /// A backup after an empty initial sync, ready for its first checkpoint.
    static func ready() -> BackupSessionStateMachine {
        var backup = welcomed()
        #expect(backup.received(Message.syncBegin(SyncBegin(pageCount: 0)).frame) == .beginSync(SyncBegin(pageCount: 0)))
        let end = ContentSummary(epoch: 0, pageCount: 0, digest: Fixtures.digest([]))
        #expect(backup.received(Message.syncEnd(end).frame) == .syncComplete(pages: 0))
        return backup
    }

    /// A backup with checkpoint `epoch` open (after committing `epoch - 1` if `epoch > 1`).
    static func receiving(epoch: UInt64) -> BackupSessionStateMachine {
        var backup = ready()
        if epoch > 1 {
            #expect(backup.received(Message.checkpointBegin(epoch: epoch - 1).frame) == .beginEpoch(epoch - 1))
            let empty = ContentSummary(epoch: epoch - 1, pageCount: 0, digest: Fixtures.digest([]))
            #expect(backup.received(Message.checkpointEnd(empty).frame) == .verified(epoch: epoch - 1))
        }
        #expect(backup.received(Message.checkpointBegin(epoch: epoch).frame) == .beginEpoch(epoch))
        #expect(backup.openEpoch == epoch)
        return backup
    }

    /// Asserts `action` closes the session with an error of `kind`, and that the machine is closed.
    static func expectClose(_ action: BackupSessionStateMachine.Action, _ kind: String, containing text: String? = nil,
                            _ backup: BackupSessionStateMachine, sourceLocation: SourceLocation = #_sourceLocation) {
        guard let error = action.closeError else {
            Issue.record("expected .close(\(kind)), got \(action)", sourceLocation: sourceLocation)
            return
        }
        #expect(error.kind == kind, "\(error)", sourceLocation: sourceLocation)
        if let text { #expect(error.description.contains(text), "\(error.description)", sourceLocation: sourceLocation) }
        #expect(backup.isClosed, sourceLocation: sourceLocation)
        #expect(backup.openEpoch == nil, sourceLocation: sourceLocation)
    }

    @Test("a heartbeat echo is a round trip when heartbeat-echo was agreed, a protocol error otherwise")
    func heartbeatEcho() {
        let echo = Message.heartbeatEcho(Heartbeat(sequence: 2, senderTime: 77)).frame
        var backup = Self.ready()
        #expect(backup.received(echo) == .heartbeatEcho(Heartbeat(sequence: 2, senderTime: 77)))
        #expect(!backup.isClosed)

        // A primary that does not offer it (an older build) never gets echoes, and may not send them.
        var old = BackupSessionStateMachine(identity: Self.identity, capabilities: .supported, committedEpoch: 0)
        let offered = Capabilities.supported.subtracting(.heartbeatEcho)
        #expect(old.received(Fixtures.hello(capabilities: offered, required: []))
            == .send(.welcome(Welcome(capabilities: offered, committedEpoch: 0))))
        Self.expectClose(old.received(echo), "unexpected", containing: "heartbeat-echo", old)
    }

    @Test("content frames are checksummed with XXH3 when both sides offer xxh3-digest, with SHA-256 for a primary that does not; the other checksum is refused")
    func frameChecksumFollowsTheAgreement() {
        for (offered, used) in [(Capabilities.supported, EpochDigest.FrameChecksum.xxh3),
                                (Capabilities.supported.subtracting(.xxh3Digest), .sha256)] {
            var backup = BackupSessionStateMachine(identity: Self.identity, capabilities: .supported, committedEpoch: 0)
            #expect(backup.received(Fixtures.hello(capabilities: offered, required: [])) == .send(.welcome(Welcome(capabilities: offered, committedEpoch: 0))))
            let sync = ContentSummary(epoch: 0, pageCount: 0, digest: Fixtures.digest([], frameChecksum: used))
            _ = backup.received(Message.syncBegin(SyncBegin(pageCount: 0)).frame)
            #expect(backup.received(Message.syncEnd(sync).frame) == .syncComplete(pages: 0))
            for (epoch, checksum, accepted) in [(UInt64(1), used, true), (2, used == .xxh3 ? .sha256 : .xxh3, false)] {
                let frame = Message.deviceState(DeviceStateChunk(epoch: epoch, offset: 0, data: [1, 2, 3])).frame
                #expect(backup.received(Message.checkpointBegin(epoch: epoch).frame) == .beginEpoch(epoch))
                _ = backup.received(frame)
                let end = ContentSummary(epoch: epoch, pageCount: 0, deviceStateBytes: 3, digest: Fixtures.digest([frame], frameChecksum: checksum))
                let action = backup.received(Message.checkpointEnd(end).frame)
                if accepted {
                    #expect(action == .verified(epoch: epoch), "\(offered)")
                } else {
                    Self.expectClose(action, "verificationFailed", containing: "content checksum does not match", backup)
                }
            }
        }
    }

    @Test("guest input is kept for a takeover when input-replay was agreed, also inside an open checkpoint; a protocol error otherwise")
    func guestInput() {
        let input = Message.guestInput(epoch: 5, frame: [1, 2, 3]).frame
        var backup = Self.receiving(epoch: 4)
        #expect(backup.received(input) == .recordGuestInput(epoch: 5, frame: [1, 2, 3]))
        #expect(backup.openEpoch == 4, "the open checkpoint goes on")

        var old = BackupSessionStateMachine(identity: Self.identity, capabilities: .supported, committedEpoch: 0)
        let offered = Capabilities.supported.subtracting(.inputReplay)
        #expect(old.received(Fixtures.hello(capabilities: offered, required: []))
            == .send(.welcome(Welcome(capabilities: offered, committedEpoch: 0))))
        Self.expectClose(old.received(input), "unexpected", containing: "input-replay", old)
    }

    // MARK: Normal path

    @Test("full session: handshake, sync, checkpoints with every content type, heartbeats, goodbye")
    func normalPath() throws {
        var rng = SplitMix64(seed: 2024)
        var backup = BackupSessionStateMachine(identity: Self.identity, capabilities: .supported, committedEpoch: 41)
        #expect(backup.openEpoch == nil)
        #expect(backup.agreedCapabilities == [])
        #expect(backup.received(Fixtures.hello(capabilities: .supported, required: [.lz4Pages], node: "prim-7"))
            == .send(.welcome(Welcome(capabilities: .supported, committedEpoch: 41))))
        #expect(backup.agreedCapabilities == .supported)
        #expect(backup.peerName == "prim-7")
        #expect(backup.received(Message.heartbeat(Heartbeat(sequence: 1, senderTime: 10)).frame)
            == .heartbeat(Heartbeat(sequence: 1, senderTime: 10)))

        // The primary's memory and the backup's replica, kept by page index.
        var memory = (0..<64).map { _ in PageFactory.nonZero(Self.pageSize, &rng) }
        memory[5] = PageFactory.zero(Self.pageSize)
        var world = PageWorld(pageSize: Self.pageSize, pageCount: 64)
        var replica = (0..<64).map { _ in PageFactory.random(Self.pageSize, &rng) } // garbage until sync
        let encoder = PageEncoder(pageSize: Self.pageSize, capabilities: backup.agreedCapabilities)
        let decoder = PageDecoder(pageSize: Self.pageSize)
        func apply(_ batch: PageBatch) throws {
            for entry in batch.entries {
                try replica[Int(entry.index)].withUnsafeMutableBytes {
                    try decoder.decode(entry, of: batch, base: UnsafeRawBufferPointer($0), into: $0)
                }
            }
        }

        // Initial sync: every page, in batches of 16.
        #expect(backup.received(Message.syncBegin(SyncBegin(pageCount: 64)).frame) == .beginSync(SyncBegin(pageCount: 64)))
        replica = Array(repeating: PageFactory.zero(Self.pageSize), count: 64) // what .beginSync asks for
        var sync = ContentScript(epoch: 0)
        for start in stride(from: 0, to: 64, by: 16) {
            sync.addPages((start..<start + 16).map { ($0, memory[$0]) }, world: &world, encoder: encoder)
        }
        sync.addDiskWrites([(0, .bytes(rng.bytes(4096))), (1 << 20, .bytes(PageFactory.text(8192, &rng)))])
        for (position, frame) in sync.frames.enumerated() {
            let action = backup.received(frame)
            if position == sync.frames.count - 1 {
                guard case .applySyncDiskWrites(let batch) = action else { Issue.record("got \(action)"); return }
                #expect(batch.epoch == 0 && batch.entries.count == 2)
                continue
            }
            guard case .applySyncPages(let batch) = action else { Issue.record("got \(action)"); return }
            #expect(batch.frame == frame)
            #expect(batch.entries.count == 16)
            try apply(batch)
            if position == 1 {
                #expect(backup.received(Message.heartbeat(Heartbeat(sequence: 2, senderTime: 20)).frame)
                    == .heartbeat(Heartbeat(sequence: 2, senderTime: 20)))
            }
        }
        #expect(sync.summary.pageCount == 64)
        #expect(backup.received(Message.syncEnd(sync.summary).frame) == .syncComplete(pages: 64))
        #expect(replica == memory)

        // Three checkpoints with pages, device state and disk writes in varied order.
        for epoch in UInt64(1)...3 {
            #expect(backup.received(Message.checkpointBegin(epoch: epoch).frame) == .beginEpoch(epoch))
            #expect(backup.openEpoch == epoch)
            var script = ContentScript(epoch: epoch)
            for index in (0..<64).shuffled(using: &rng).prefix(10) {
                memory[index] = rng.bool(0.2) ? PageFactory.zero(Self.pageSize)
                                              : PageFactory.mutated(memory[index], changes: rng.int(in: 1...30), &rng)
            }
            let dirty = (0..<64).filter { memory[$0] != world.lastSent[$0] }
            script.addPages(dirty.prefix(6).map { ($0, memory[$0]) }, world: &world, encoder: encoder)
            script.addDeviceState(rng.bytes(1000 + Int(epoch)), chunkSize: 256)
            script.addDiskWrites([(UInt64(epoch) * 4096, .bytes(rng.bytes(512))), (0, .zeroes(length: 8192))])
            if dirty.count > 6 { script.addPages(dirty.dropFirst(6).map { ($0, memory[$0]) }, world: &world, encoder: encoder) }
            script.addDiskWrites([(1 << 30, .bytes(PageFactory.text(4096, &rng)))])

            var stagedState: [UInt8] = []
            var stagedWrites = 0
            var stagedPages = 0
            for frame in script.frames {
                switch backup.received(frame) {
                case .stagePages(let batch):
                    #expect(batch.epoch == epoch && batch.frame == frame)
                    stagedPages += batch.entries.count
                    try apply(batch)
                case .stageDeviceState(let chunk):
                    #expect(chunk.epoch == epoch)
                    #expect(chunk.offset == UInt64(stagedState.count))
                    stagedState += chunk.data
                case .stageDiskWrites(let batch):
                    #expect(batch.epoch == epoch && batch.frame == frame)
                    stagedWrites += batch.entries.count
                case let other:
                    Issue.record("epoch \(epoch): unexpected action \(other)")
                }
                #expect(backup.received(Message.heartbeat(Heartbeat(sequence: epoch, senderTime: 0)).frame)
                    == .heartbeat(Heartbeat(sequence: epoch, senderTime: 0)))
            }
            #expect(stagedState == script.deviceState)
            #expect(UInt64(stagedWrites) == script.diskWriteCount)
            #expect(UInt64(stagedPages) == script.pageCount)
            #expect(script.summary.deviceStateBytes == UInt64(1000 + epoch))
            #expect(script.summary.diskWriteCount == 3)
            #expect(backup.received(Message.checkpointEnd(script.summary).frame) == .verified(epoch: epoch))
            #expect(backup.openEpoch == nil)
            #expect(!backup.isClosed)
            #expect(replica == memory, "replica differs from the primary after epoch \(epoch)")
        }

        #expect(backup.received(Message.goodbye(SessionClose(code: .normal, message: "bye")).frame)
            == .peerClosed(SessionClose(code: .normal, message: "bye")))
        #expect(backup.isClosed)
        Self.expectClose(backup.received(Message.heartbeat(Heartbeat(sequence: 9, senderTime: 9)).frame), "unexpected",
                         containing: "after the session ended", backup)
    }

    @Test("agreed capabilities are the intersection of both sides")
    func capabilityIntersection() {
        var backup = BackupSessionStateMachine(identity: Self.identity, capabilities: [.lz4Pages, .deviceState], committedEpoch: 0)
        #expect(backup.received(Fixtures.hello(capabilities: [.lz4Pages, .xorDelta], required: [.lz4Pages]))
            == .send(.welcome(Welcome(capabilities: [.lz4Pages], committedEpoch: 0))))
        #expect(backup.agreedCapabilities == [.lz4Pages])
    }

    // MARK: Handshake failures

    @Test("HELLO of another version is rejected naming both versions")
    func versionMismatch() {
        for remote: UInt16 in [0, 2, 0xFFFF] {
            var backup = BackupSessionStateMachine(identity: Self.identity, committedEpoch: 0)
            let action = backup.received(Fixtures.hello(version: remote))
            guard let close = action.rejection else { Issue.record("version \(remote): got \(action)"); continue }
            #expect(close.code == .versionMismatch)
            #expect(close.message.contains("version \(understudyProtocolVersion)"), "\(close.message)")
            #expect(close.message.contains("version \(remote)"), "\(close.message)")
            #expect(close.message == ProtocolError.versionMismatch(local: 1, remote: remote).description)
            #expect(backup.isClosed)
            #expect(backup.agreedCapabilities == [])
            #expect(backup.received(Fixtures.hello()).isClose)
        }
        // A version-2 HELLO whose body is in some unknown future layout is still a version mismatch.
        var backup = BackupSessionStateMachine(identity: Self.identity, committedEpoch: 0)
        let future = rawFrame(.hello) { w in w.write(bytes: understudyMagic); w.write(UInt16(2)); w.write(bytes: [1, 2, 3]) }
        #expect(backup.received(future).rejection?.code == .versionMismatch)
    }

    @Test("HELLO for another VM is rejected with identityMismatch",
          arguments: [
              (VMIdentity(id: "vm-other", memorySize: 64 * 4096, pageSize: 4096), "VM id"),
              (VMIdentity(id: "vm-test-01", memorySize: 128 * 4096, pageSize: 4096), "memory size"),
              (VMIdentity(id: "vm-test-01", memorySize: 64 * 4096, pageSize: 8192), "page size"),
              (VMIdentity(id: "vm-test-01", memorySize: 64 * 4096, pageSize: 4096, diskSize: 1 << 20), "disks are"),
              (VMIdentity(id: "vm-test-01", memorySize: 64 * 4096, pageSize: 4096, diskSize: 1000), "invalid"),
              (VMIdentity(id: "vm-test-01", memorySize: 64 * 4096, pageSize: 1000), "invalid"),
              (VMIdentity(id: "", memorySize: 64 * 4096, pageSize: 4096), "invalid"),
              (VMIdentity(id: "vm-test-01", memorySize: 4096 * 64 + 1, pageSize: 4096), "invalid"),
          ])
    func identityMismatch(other: VMIdentity, field: String) {
        var backup = BackupSessionStateMachine(identity: Self.identity, committedEpoch: 0)
        let action = backup.received(Fixtures.hello(other))
        guard let close = action.rejection else { Issue.record("got \(action)"); return }
        #expect(close.code == .identityMismatch)
        #expect(close.message.contains(field), "\(close.message)")
        #expect(backup.isClosed)
        #expect(backup.peerName == nil)
    }

    @Test("a required capability this backup lacks is rejected")
    func missingCapability() {
        var backup = BackupSessionStateMachine(identity: Self.identity, capabilities: [.lz4Pages, .xorDelta], committedEpoch: 0)
        let action = backup.received(Fixtures.hello(capabilities: .supported, required: [.lz4Pages, .diskWrites]))
        guard let close = action.rejection else { Issue.record("got \(action)"); return }
        #expect(close.code == .capabilityMismatch)
        #expect(close.message.contains("disk-writes"), "\(close.message)")
        #expect(!close.message.contains("lz4-pages"), "only the missing capability should be named: \(close.message)")
        #expect(backup.isClosed)
        // An unknown required bit (from a newer primary) is also refused.
        var other = BackupSessionStateMachine(identity: Self.identity, committedEpoch: 0)
        let unknown = other.received(Fixtures.hello(required: Capabilities(rawValue: 1 << 40)))
        #expect(unknown.rejection?.code == .capabilityMismatch)
        #expect(unknown.rejection?.message.contains("unknown(0x10000000000)") == true)
    }

    @Test("device state and disk writes need the capability the handshake agreed")
    func contentNeedsAgreedCapability() {
        for (offered, frame, name) in [
            (Capabilities([.lz4Pages, .xorDelta, .diskWrites]), Message.deviceState(DeviceStateChunk(epoch: 1, offset: 0, data: [1])).frame, "device-state"),
            (Capabilities([.lz4Pages, .xorDelta, .deviceState]), DiskWriteBatch.frame(epoch: 1, changes: [.write(offset: 0, data: .zeroes(length: 512))]), "disk-writes"),
        ] {
            var backup = BackupSessionStateMachine(identity: Self.identity, committedEpoch: 0)
            #expect(backup.received(Fixtures.hello(capabilities: offered, required: [])) == .send(.welcome(Welcome(capabilities: offered, committedEpoch: 0))))
            _ = backup.received(Message.syncBegin(SyncBegin(pageCount: 0)).frame)
            _ = backup.received(Message.syncEnd(ContentSummary(epoch: 0, pageCount: 0, digest: Fixtures.digest([]))).frame)
            #expect(backup.received(Message.checkpointBegin(epoch: 1).frame) == .beginEpoch(1))
            Self.expectClose(backup.received(frame), "unexpected", containing: "\(name) capability", backup)
        }
    }

    @Test("not an Understudy HELLO")
    func badMagic() {
        var backup = BackupSessionStateMachine(identity: Self.identity, committedEpoch: 0)
        let frame = rawFrame(.hello) { w in w.write(bytes: Array("SSH-2.0-".utf8)); w.write(UInt16(1)) }
        #expect(backup.received(frame) == .close(.notUnderstudy))
        #expect(backup.isClosed)
    }

    @Test("every frame type before HELLO closes the session")
    func framesBeforeHello() throws {
        for (message, type) in try MessageRoundTripTests.everyMessage() where type != .hello {
            var backup = BackupSessionStateMachine(identity: Self.identity, committedEpoch: 0)
            let action = backup.received(message.frame)
            let expected: ProtocolError = (type == .pages || type == .syncPages)
                ? .unexpected("\(type) before the handshake") : .unexpected("\(type) before HELLO")
            #expect(action == .close(expected), "\(type)")
            #expect(backup.isClosed)
            #expect(backup.received(Fixtures.hello()).isClose, "a HELLO after the failure must not reopen")
        }
    }

    @Test("a second HELLO closes the session", arguments: [0, 1, 2, 3])
    func duplicateHello(stage: Int) {
        var backup = switch stage {
        case 0: Self.welcomed()
        case 1: { var b = Self.welcomed(); _ = b.received(Message.syncBegin(SyncBegin(pageCount: 1)).frame); return b }()
        case 2: Self.ready()
        default: Self.receiving(epoch: 1)
        }
        Self.expectClose(backup.received(Fixtures.hello()), "unexpected", containing: "hello", backup)
    }

    // MARK: Sync failures

    @Test("sync checks: page count limit, epoch 0, totals")
    func syncFailures() throws {
        var backup = Self.welcomed()
        Self.expectClose(backup.received(Message.syncBegin(SyncBegin(pageCount: 65)).frame), "malformed", containing: "65", backup)

        // Fewer pages than announced.
        var world = PageWorld(pageSize: Self.pageSize, pageCount: 64)
        let encoder = PageEncoder(pageSize: Self.pageSize, capabilities: .supported)
        var rng = SplitMix64(seed: 5)
        var short = ContentScript(epoch: 0)
        short.addPages((0..<10).map { ($0, PageFactory.text(Self.pageSize, &rng)) }, world: &world, encoder: encoder)
        backup = Self.welcomed()
        _ = backup.received(Message.syncBegin(SyncBegin(pageCount: 64)).frame)
        for frame in short.frames { #expect(backup.received(frame) == .applySyncPages(try PageBatch(frame: frame, pageSize: 4096, pageCount: 64))) }
        Self.expectClose(backup.received(Message.syncEnd(short.summary).frame), "verificationFailed", containing: "announced at least 64", backup)

        // Count in SYNC_END differs from what arrived.
        backup = Self.welcomed()
        _ = backup.received(Message.syncBegin(SyncBegin(pageCount: 10)).frame)
        for frame in short.frames { _ = backup.received(frame) }
        var wrong = short.summary
        wrong.pageCount = 11
        Self.expectClose(backup.received(Message.syncEnd(wrong).frame), "verificationFailed", containing: "11 pages, 10 arrived", backup)

        // Digest differs.
        backup = Self.welcomed()
        _ = backup.received(Message.syncBegin(SyncBegin(pageCount: 10)).frame)
        for frame in short.frames { _ = backup.received(frame) }
        wrong = short.summary
        wrong.digest[31] ^= 1
        Self.expectClose(backup.received(Message.syncEnd(wrong).frame), "verificationFailed", containing: "checksum", backup)

        // Sync pages carrying a non-zero epoch.
        backup = Self.welcomed()
        _ = backup.received(Message.syncBegin(SyncBegin(pageCount: 1)).frame)
        var other = PageWorld(pageSize: Self.pageSize, pageCount: 64)
        let (frame, _) = other.send([(0, PageFactory.text(Self.pageSize, &rng))], epoch: 3, encoder: encoder, type: .syncPages)
        Self.expectClose(backup.received(frame), "malformed", containing: "epoch 3", backup)

        // Checkpoint content during the sync.
        backup = Self.welcomed()
        _ = backup.received(Message.syncBegin(SyncBegin(pageCount: 1)).frame)
        Self.expectClose(backup.received(Message.checkpointBegin(epoch: 1).frame), "unexpected", backup)
        backup = Self.welcomed()
        Self.expectClose(backup.received(Message.checkpointBegin(epoch: 1).frame), "unexpected", containing: "SYNC_BEGIN", backup)
    }

    // MARK: Checkpoint ordering

    @Test("checkpoint epochs must follow each other")
    func epochOrdering() {
        var backup = Self.receiving(epoch: 5) // committed 4
        _ = backup.received(Message.checkpointEnd(ContentSummary(epoch: 5, pageCount: 0, digest: Fixtures.digest([]))).frame)
        var again = backup
        Self.expectClose(again.received(Message.checkpointBegin(epoch: 5).frame), "unexpected", containing: "checkpoint 5 again (last was 5)", again)
        var older = backup
        Self.expectClose(older.received(Message.checkpointBegin(epoch: 2).frame), "unexpected", containing: "again", older)
        var skip = backup
        Self.expectClose(skip.received(Message.checkpointBegin(epoch: 7).frame), "unexpected", containing: "checkpoint 7 skips epochs after 5", skip)
        #expect(backup.received(Message.checkpointBegin(epoch: 6).frame) == .beginEpoch(6))

        // The first checkpoint may carry any epoch but 0.
        var first = Self.ready()
        Self.expectClose(first.received(Message.checkpointBegin(epoch: 0).frame), "malformed", containing: "reserved", first)
        var late = Self.ready()
        #expect(late.received(Message.checkpointBegin(epoch: 1000).frame) == .beginEpoch(1000))

        // A checkpoint begun while another is open.
        var open = Self.receiving(epoch: 1)
        Self.expectClose(open.received(Message.checkpointBegin(epoch: 2).frame), "unexpected", containing: "receiving checkpoint 1", open)
        // Content outside a checkpoint.
        var idle = Self.ready()
        Self.expectClose(idle.received(Message.deviceState(DeviceStateChunk(epoch: 1, offset: 0, data: [1])).frame), "unexpected", idle)
        idle = Self.ready()
        Self.expectClose(idle.received(Message.checkpointEnd(ContentSummary(epoch: 1, pageCount: 0, digest: Fixtures.digest([]))).frame), "unexpected", idle)
    }

    @Test("epoch UInt64.max is refused instead of trapping")
    func epochOverflow() async {
        await #expect(processExitsWith: .success) {
            let identity = VMIdentity(id: "vm", memorySize: 4096, pageSize: 4096)
            var backup = BackupSessionStateMachine(identity: identity, committedEpoch: 0)
            _ = backup.received(Message.hello(Hello(identity: identity, nodeName: "p")).frame)
            _ = backup.received(Message.syncBegin(SyncBegin(pageCount: 0)).frame)
            var empty = EpochDigest(frameChecksum: .xxh3)
            _ = backup.received(Message.syncEnd(ContentSummary(epoch: 0, pageCount: 0, digest: empty.value)).frame)
            _ = backup.received(Message.checkpointBegin(epoch: .max).frame)
            empty = EpochDigest(frameChecksum: .xxh3)
            _ = backup.received(Message.checkpointEnd(ContentSummary(epoch: .max, pageCount: 0, digest: empty.value)).frame)
            let action = backup.received(Message.checkpointBegin(epoch: 0).frame)
            guard case .close = action else { fatalError("expected close, got \(action)") }
        }
    }

    @Test("content for another epoch")
    func wrongEpochContent() {
        var rng = SplitMix64(seed: 8)
        var world = PageWorld(pageSize: Self.pageSize, pageCount: 64)
        let encoder = PageEncoder(pageSize: Self.pageSize, capabilities: .supported)
        let (pages, _) = world.send([(1, PageFactory.text(Self.pageSize, &rng))], epoch: 4, encoder: encoder)
        var backup = Self.receiving(epoch: 3)
        Self.expectClose(backup.received(pages), "unexpected", containing: "pages for epoch 4 while epoch 3 is open", backup)
        backup = Self.receiving(epoch: 3)
        Self.expectClose(backup.received(Message.deviceState(DeviceStateChunk(epoch: 2, offset: 0, data: [1])).frame),
                         "unexpected", containing: "device state for epoch 2 while epoch 3 is open", backup)
        backup = Self.receiving(epoch: 3)
        Self.expectClose(backup.received(DiskWriteBatch.frame(epoch: 9, changes: [.write(offset: 0, data: .zeroes(length: 512))])),
                         "unexpected", containing: "disk writes for epoch 9 while epoch 3 is open", backup)
        backup = Self.receiving(epoch: 3)
        Self.expectClose(backup.received(Message.checkpointEnd(ContentSummary(epoch: 4, pageCount: 0, digest: Fixtures.digest([]))).frame),
                         "unexpected", containing: "checkpoint end for epoch 4", backup)
        // SYNC_PAGES inside a checkpoint is not PAGES.
        backup = Self.receiving(epoch: 3)
        let (sync, _) = world.send([(1, PageFactory.text(Self.pageSize, &rng))], epoch: 3, encoder: encoder, type: .syncPages)
        Self.expectClose(backup.received(sync), "unexpected", backup)
        // A page index beyond the VM.
        backup = Self.receiving(epoch: 3)
        let outside = rawFrame(.pages) { w in w.write(UInt64(3)); w.write(UInt32(1)); w.write(UInt64(64)); w.write(UInt8(0)) }
        Self.expectClose(backup.received(outside), "malformed", containing: "page index 64", backup)
    }

    @Test("device-state chunks must arrive at the running offset")
    func deviceStateOffsets() {
        var backup = Self.receiving(epoch: 1)
        #expect(backup.received(Message.deviceState(DeviceStateChunk(epoch: 1, offset: 0, data: [1, 2, 3])).frame)
            == .stageDeviceState(DeviceStateChunk(epoch: 1, offset: 0, data: [1, 2, 3])))
        // An empty chunk is allowed and does not move the offset.
        #expect(backup.received(Message.deviceState(DeviceStateChunk(epoch: 1, offset: 3, data: [])).frame)
            == .stageDeviceState(DeviceStateChunk(epoch: 1, offset: 3, data: [])))
        var gap = backup
        Self.expectClose(gap.received(Message.deviceState(DeviceStateChunk(epoch: 1, offset: 4, data: [9])).frame),
                         "unexpected", containing: "offset 4, expected 3", gap)
        var overlap = backup
        Self.expectClose(overlap.received(Message.deviceState(DeviceStateChunk(epoch: 1, offset: 0, data: [9])).frame),
                         "unexpected", containing: "offset 0, expected 3", overlap)
        #expect(backup.received(Message.deviceState(DeviceStateChunk(epoch: 1, offset: 3, data: [4])).frame)
            == .stageDeviceState(DeviceStateChunk(epoch: 1, offset: 3, data: [4])))
    }

    // MARK: Verification

    /// An honest checkpoint 1 with 3 page batches, 2 device-state chunks and 2 disk-write batches.
    static func honestCheckpoint() -> ContentScript {
        var rng = SplitMix64(seed: 77)
        var world = PageWorld(pageSize: pageSize, pageCount: 64)
        let encoder = PageEncoder(pageSize: pageSize, capabilities: .supported)
        var script = ContentScript(epoch: 1)
        script.addPages((0..<4).map { ($0, PageFactory.text(pageSize, &rng)) }, world: &world, encoder: encoder)
        script.addDeviceState(rng.bytes(300), chunkSize: 200)
        script.addDiskWrites([(0, .bytes(rng.bytes(512))), (512, .zeroes(length: 512))])
        script.addPages((4..<6).map { ($0, PageFactory.random(pageSize, &rng)) }, world: &world, encoder: encoder)
        script.addDiskWrites([(4096, .bytes(rng.bytes(100)))])
        script.addPages([(7, PageFactory.zero(pageSize))], world: &world, encoder: encoder)
        return script
    }

    @Test("a checkpoint whose end does not match its content never commits",
          arguments: ["pages+1", "pages-1", "deviceBytes", "diskWrites", "digestBit", "digestOfOtherOrder", "digestZero",
                      "missingFrame", "duplicatedFrame", "swappedFrames"])
    func verificationFailures(tamper: String) {
        let script = Self.honestCheckpoint()
        var summary = script.summary
        var frames = script.frames
        var expectedText = "checksum"
        switch tamper {
        case "pages+1": summary.pageCount += 1; expectedText = "announces 8 pages, 7 arrived"
        case "pages-1": summary.pageCount -= 1; expectedText = "announces 6 pages, 7 arrived"
        case "deviceBytes": summary.deviceStateBytes = 299; expectedText = "299 device-state bytes, 300 arrived"
        case "diskWrites": summary.diskWriteCount = 4; expectedText = "4 disk writes, 3 arrived"
        case "digestBit": summary.digest[0] ^= 0x80
        case "digestOfOtherOrder": summary.digest = Fixtures.digest(frames.reversed())
        case "digestZero": summary.digest = [UInt8](repeating: 0, count: 32)
        case "missingFrame":
            // Dropping a disk-write batch with one write: the counts must be adjusted to match, so
            // only the checksum can catch it.
            frames.remove(at: 5)
            summary.diskWriteCount -= 1
        case "duplicatedFrame":
            // A disk-write batch sent twice, counts adjusted: only the checksum can catch it (a page
            // batch sent twice is refused on arrival, see StagingLimitsTests).
            frames.insert(frames[3], at: 4)
            summary.diskWriteCount += 2
        case "swappedFrames":
            frames.swapAt(4, 5)
        default: Issue.record("unknown tamper \(tamper)")
        }
        var backup = Self.receiving(epoch: 1)
        for frame in frames {
            let action = backup.received(frame)
            #expect(!action.endsSession, "\(tamper): content frame refused: \(action)")
        }
        let end = backup.received(Message.checkpointEnd(summary).frame)
        #expect(end != .verified(epoch: 1))
        Self.expectClose(end, "verificationFailed", containing: expectedText, backup)
        #expect(end.closeError?.description.contains("checkpoint 1") == true)
        // Nothing afterwards revives it, not even the honest end.
        #expect(backup.received(Message.checkpointEnd(script.summary).frame).isClose)
    }

    @Test("the honest version of that checkpoint commits")
    func honestCommits() {
        let script = Self.honestCheckpoint()
        #expect(script.summary.pageCount == 7 && script.summary.deviceStateBytes == 300 && script.summary.diskWriteCount == 3)
        var backup = Self.receiving(epoch: 1)
        for frame in script.frames { #expect(!backup.received(frame).endsSession) }
        #expect(backup.received(Message.checkpointEnd(script.summary).frame) == .verified(epoch: 1))
        #expect(backup.received(Message.checkpointBegin(epoch: 2).frame) == .beginEpoch(2))
    }

    // MARK: Closing

    @Test("GOODBYE in every state after HELLO ends the session as peerClosed", arguments: [0, 1, 2, 3])
    func goodbye(stage: Int) {
        var backup = switch stage {
        case 0: Self.welcomed()
        case 1: { var b = Self.welcomed(); _ = b.received(Message.syncBegin(SyncBegin(pageCount: 1)).frame); return b }()
        case 2: Self.ready()
        default: Self.receiving(epoch: 4)
        }
        let close = SessionClose(code: .busy, message: "shutting down")
        #expect(backup.received(Message.goodbye(close).frame) == .peerClosed(close))
        #expect(backup.isClosed)
        #expect(backup.openEpoch == nil)
        #expect(backup.received(Message.checkpointBegin(epoch: 5).frame) == .close(.unexpected("checkpointBegin after the session ended")))
    }

    @Test("GOODBYE before HELLO is a protocol error")
    func goodbyeBeforeHello() {
        var backup = BackupSessionStateMachine(identity: Self.identity, committedEpoch: 0)
        #expect(backup.received(Message.goodbye(SessionClose(code: .normal, message: "")).frame) == .close(.unexpected("goodbye before HELLO")))
    }

    @Test("heartbeats are answered in every state after HELLO and change nothing", arguments: [0, 1, 2, 3])
    func heartbeats(stage: Int) {
        var backup = switch stage {
        case 0: Self.welcomed()
        case 1: { var b = Self.welcomed(); _ = b.received(Message.syncBegin(SyncBegin(pageCount: 0)).frame); return b }()
        case 2: Self.ready()
        default: Self.receiving(epoch: 2)
        }
        for sequence in UInt64(0)..<5 {
            let beat = Heartbeat(sequence: sequence, senderTime: sequence * 1000)
            #expect(backup.received(Message.heartbeat(beat).frame) == .heartbeat(beat))
        }
        // The session goes on as if nothing had arrived.
        switch stage {
        case 0: #expect(backup.received(Message.syncBegin(SyncBegin(pageCount: 0)).frame) == .beginSync(SyncBegin(pageCount: 0)))
        case 1: #expect(backup.received(Message.syncEnd(ContentSummary(epoch: 0, pageCount: 0, digest: Fixtures.digest([]))).frame) == .syncComplete(pages: 0))
        case 2: #expect(backup.received(Message.checkpointBegin(epoch: 1).frame) == .beginEpoch(1))
        default: #expect(backup.received(Message.checkpointEnd(ContentSummary(epoch: 2, pageCount: 0, digest: Fixtures.digest([]))).frame) == .verified(epoch: 2))
        }
    }

    @Test("after a close every frame, valid or not, returns .close")
    func closedIsFinal() throws {
        var backup = Self.receiving(epoch: 1)
        backup.abort()
        #expect(backup.isClosed)
        #expect(backup.openEpoch == nil)
        for (message, type) in try MessageRoundTripTests.everyMessage() {
            #expect(backup.received(message.frame) == .close(.unexpected("\(type) after the session ended")))
        }
        #expect(backup.isClosed)
    }

    @Test("frames the backup never receives close the session", arguments: [FrameType.welcome, .reject, .ack])
    func backupBoundFramesOnly(type: FrameType) throws {
        let message = try MessageRoundTripTests.everyMessage().first { $0.1 == type }!.0
        var backup = Self.ready()
        Self.expectClose(backup.received(message.frame), "unexpected", backup)
    }

    @Test("a catch-up starts on the replica's committed epoch and accepts the next checkpoint whatever its number")
    func catchUp() {
        var backup = Self.welcomed(committedEpoch: 40)
        #expect(backup.received(Message.catchUpBegin(baseEpoch: 40).frame) == .beginCatchUp(baseEpoch: 40))
        #expect(backup.received(Message.checkpointBegin(epoch: 47).frame) == .beginEpoch(47))
        let empty = ContentSummary(epoch: 47, pageCount: 0, digest: Fixtures.digest([]))
        #expect(backup.received(Message.checkpointEnd(empty).frame) == .verified(epoch: 47))
        // After it, the usual order.
        Self.expectClose(backup.received(Message.checkpointBegin(epoch: 49).frame), "unexpected", containing: "skips", backup)
    }

    @Test("a catch-up from another epoch than the replica's, from none, or without the capability is refused")
    func catchUpRefused() {
        var other = Self.welcomed(committedEpoch: 40)
        Self.expectClose(other.received(Message.catchUpBegin(baseEpoch: 39).frame), "unexpected", containing: "full synchronisation", other)
        var empty = Self.welcomed(committedEpoch: 0)
        Self.expectClose(empty.received(Message.catchUpBegin(baseEpoch: 0).frame), "unexpected", empty)
        var old = BackupSessionStateMachine(identity: Self.identity, capabilities: Capabilities.supported.subtracting(.catchUp), committedEpoch: 40)
        _ = old.received(Fixtures.hello(required: [.deviceState]))
        Self.expectClose(old.received(Message.catchUpBegin(baseEpoch: 40).frame), "unexpected", containing: "capability", old)
        // The catch-up checkpoint must come after the replica's.
        var stale = Self.welcomed(committedEpoch: 40)
        _ = stale.received(Message.catchUpBegin(baseEpoch: 40).frame)
        Self.expectClose(stale.received(Message.checkpointBegin(epoch: 40).frame), "unexpected", containing: "not after", stale)
        // Once checkpoints flow, CATCH_UP_BEGIN is out of place.
        var ready = Self.ready()
        Self.expectClose(ready.received(Message.catchUpBegin(baseEpoch: 1).frame), "unexpected", ready)
    }
}
