/// The backup's side of one replication session, as a value with no I/O.
///
/// Feed it every frame that arrives; it validates the frame against the session's state and
/// returns what the I/O layer must do. It decides when an epoch is whole and verified (counts and
/// checksum) and only then returns `.verified`; any error returns `.close`, and the I/O layer then
/// discards whatever it staged for the open epoch, so a partial checkpoint is never applied.
///
/// It also bounds what a checkpoint makes the backup stage (`StagingLimits`): a page twice in one
/// checkpoint, or more device state, disk data or disk changes than the limits allow, closes the
/// session before the frame is staged.
public struct BackupSessionStateMachine: Sendable {
    public enum Action: Sendable, Equatable {
        /// Send this message (WELCOME, or GOODBYE in reply to one).
        case send(Message)
        /// Send REJECT with this reason and close: the handshake failed.
        case reject(SessionClose)
        /// Initial synchronisation starts: reset the replica memory to zeroes.
        case beginSync(SyncBegin)
        /// Write these sync pages into the replica (they are not part of any epoch).
        case applySyncPages(PageBatch)
        /// Write this disk content into the replica disk (part of the sync, not of any epoch).
        case applySyncDiskWrites(DiskWriteBatch)
        /// The primary catches the replica up instead of synchronising it: the replica must be
        /// committed at `baseEpoch` (it is not reset); the next checkpoint brings it up to date.
        case beginCatchUp(baseEpoch: UInt64)
        /// Initial synchronisation arrived whole and verified.
        case syncComplete(pages: UInt64)
        /// A checkpoint starts: open an empty staging area for it.
        case beginEpoch(UInt64)
        /// Add to the open epoch's staging area.
        case stagePages(PageBatch)
        case stageDeviceState(DeviceStateChunk)
        case stageDiskWrites(DiskWriteBatch)
        /// The open epoch arrived whole and its digest matched; it is still only staged in memory.
        /// The I/O layer commits it: seals it in the journal, acknowledges it, then applies it.
        case verified(epoch: UInt64)
        case heartbeat(Heartbeat)
        /// The primary sent back one of our heartbeats (heartbeat-echo): a round trip ended.
        case heartbeatEcho(Heartbeat)
        /// Keep this frame the guest received while `epoch` was open on the primary, for a takeover.
        case recordGuestInput(epoch: UInt64, frame: [UInt8])
        /// The peer ended the session in order (GOODBYE); discard the open epoch.
        case peerClosed(SessionClose)
        /// The peer broke the protocol: send GOODBYE with this error, discard the open epoch, close.
        case close(ProtocolError)
    }

    struct Content: Sendable {
        var epoch: UInt64
        var pages: UInt64 = 0
        var deviceStateBytes: UInt64 = 0
        var diskWrites: UInt64 = 0
        /// Decompressed disk data bytes (zeroed ranges not counted).
        var diskBytes: UInt64 = 0
        var digest: EpochDigest
        /// The catch-up checkpoint: its disk changes are bounded by the primary's journal, not by
        /// what one interval writes.
        var isCatchUp = false
    }

    enum State: Sendable {
        case awaitingHello
        case awaitingSync
        case syncing(expectedPages: UInt64, Content)
        /// Between checkpoints. `lastEpoch` is nil until the first checkpoint after the sync.
        case ready(lastEpoch: UInt64?)
        /// Awaiting the catch-up checkpoint: any epoch after `base` (the primary went on
        /// numbering while the connection was down).
        case catchingUp(base: UInt64)
        case receiving(Content)
        case closed
    }

    public let identity: VMIdentity
    public let capabilities: Capabilities
    public let limits: StagingLimits
    private let committedEpoch: UInt64
    private(set) var state: State = .awaitingHello
    /// The pages the open checkpoint has carried, so that a page sent twice is refused before it
    /// is staged (and before the journal grows for it).
    private var seenPages = PageSet()
    /// What the handshake agreed; empty before it.
    public private(set) var agreedCapabilities: Capabilities = []
    private var frameChecksum: EpochDigest.FrameChecksum { EpochDigest.FrameChecksum(agreed: agreedCapabilities) }
    /// The primary's node name from its HELLO.
    public private(set) var peerName: String?

    /// - Parameters:
    ///   - identity: the VM this backup protects; a primary with another identity is refused.
    ///   - committedEpoch: the replica's last committed epoch, reported to the primary.
    ///   - limits: what one checkpoint may make the backup stage.
    public init(identity: VMIdentity, capabilities: Capabilities = .supported, committedEpoch: UInt64,
                limits: StagingLimits = StagingLimits()) {
        self.identity = identity
        self.capabilities = capabilities
        self.committedEpoch = committedEpoch
        self.limits = limits
    }

    public var isClosed: Bool { if case .closed = state { true } else { false } }

    /// The epoch being staged, if any.
    public var openEpoch: UInt64? { if case .receiving(let content) = state { content.epoch } else { nil } }

    public mutating func received(_ frame: Frame) -> Action {
        if case .closed = state { return .close(.unexpected("\(frame.type) after the session ended")) }
        let knownIdentity: VMIdentity? = if case .awaitingHello = state { nil } else { identity }
        let message: Message
        do {
            message = try Message(frame: frame, identity: knownIdentity)
        } catch {
            return fail(error)
        }
        switch (state, message) {
        case (.awaitingHello, .hello(let hello)):
            return handshake(hello)
        case (.awaitingHello, _):
            return fail(.unexpected("\(frame.type) before HELLO"))

        case (_, .diskWrites) where !agreedCapabilities.contains(.diskWrites):
            return fail(.unexpected("disk writes, but the session did not agree on the disk-writes capability"))
        case (_, .heartbeat(let beat)):
            return .heartbeat(beat)
        case (_, .heartbeatEcho) where !agreedCapabilities.contains(.heartbeatEcho):
            return fail(.unexpected("heartbeat echo, but the session did not agree on the heartbeat-echo capability"))
        case (_, .heartbeatEcho(let beat)):
            return .heartbeatEcho(beat)
        case (_, .guestInput) where !agreedCapabilities.contains(.inputReplay):
            return fail(.unexpected("guest input, but the session did not agree on the input-replay capability"))
        case (_, .guestInput(let epoch, let frame)):
            return .recordGuestInput(epoch: epoch, frame: frame)
        case (_, .goodbye(let close)):
            state = .closed
            return .peerClosed(close)

        case (.awaitingSync, .syncBegin(let begin)):
            guard begin.pageCount <= identity.pageCount else {
                return fail(.malformed("sync announces \(begin.pageCount) pages, the VM has \(identity.pageCount)"))
            }
            state = .syncing(expectedPages: begin.pageCount, Content(epoch: 0, digest: EpochDigest(frameChecksum: frameChecksum)))
            return .beginSync(begin)
        case (.awaitingSync, .catchUpBegin) where !agreedCapabilities.contains(.catchUp):
            return fail(.unexpected("catch-up, but the session did not agree on the catch-up capability"))
        case (.awaitingSync, .catchUpBegin(let base)):
            guard base > 0, base == committedEpoch else {
                return fail(.unexpected("catch-up from checkpoint \(base), but this replica is committed at \(committedEpoch): a full synchronisation is needed"))
            }
            state = .catchingUp(base: base)
            return .beginCatchUp(baseEpoch: base)
        case (.catchingUp(let base), .checkpointBegin(let epoch)):
            guard epoch > base, epoch < .max else {
                return fail(.unexpected("catch-up checkpoint \(epoch) is not after the replica's checkpoint \(base)"))
            }
            seenPages.removeAll()
            state = .receiving(Content(epoch: epoch, digest: EpochDigest(frameChecksum: frameChecksum), isCatchUp: true))
            return .beginEpoch(epoch)
        case (.syncing(let expected, var content), .syncPages(let batch)):
            guard batch.epoch == 0 else { return fail(.malformed("sync pages carry epoch \(batch.epoch), expected 0")) }
            content.pages += UInt64(batch.entries.count)
            content.digest.add(frame)
            state = .syncing(expectedPages: expected, content)
            return .applySyncPages(batch)
        case (.syncing(let expected, var content), .diskWrites(let batch)):
            guard batch.epoch == 0 else { return fail(.malformed("sync disk writes carry epoch \(batch.epoch), expected 0")) }
            content.diskWrites += UInt64(batch.entries.count)
            content.digest.add(frame)
            state = .syncing(expectedPages: expected, content)
            return .applySyncDiskWrites(batch)
        case (.syncing(let expected, let content), .syncEnd(let summary)):
            guard summary.epoch == 0 else { return fail(.malformed("SYNC_END carries epoch \(summary.epoch), expected 0")) }
            if let problem = Self.verify(content, against: summary) { return fail(.verificationFailed("initial sync: \(problem)")) }
            guard content.pages >= expected else {
                return fail(.verificationFailed("initial sync sent \(content.pages) pages, announced at least \(expected)"))
            }
            state = .ready(lastEpoch: nil)
            return .syncComplete(pages: content.pages)

        case (.ready(let last), .checkpointBegin(let epoch)):
            // 0 and UInt64.max are reserved, so `last + 1` below cannot overflow.
            guard epoch > 0, epoch < .max else { return fail(.malformed("checkpoint epoch \(epoch) is reserved")) }
            if let last, epoch != last + 1 {
                return fail(.unexpected(epoch <= last ? "checkpoint \(epoch) again (last was \(last))"
                                                      : "checkpoint \(epoch) skips epochs after \(last)"))
            }
            seenPages.removeAll()
            state = .receiving(Content(epoch: epoch, digest: EpochDigest(frameChecksum: frameChecksum)))
            return .beginEpoch(epoch)
        case (.receiving(var content), .pages(let batch)):
            guard batch.epoch == content.epoch else { return fail(wrongEpoch("pages", batch.epoch, content.epoch)) }
            guard content.pages + UInt64(batch.entries.count) <= identity.pageCount else {
                return fail(.malformed("checkpoint \(content.epoch) carries more than the guest's \(identity.pageCount) pages"))
            }
            for entry in batch.entries where !seenPages.insert(entry.index, of: identity.pageCount) {
                return fail(.unexpected("checkpoint \(content.epoch) carries page \(entry.index) twice"))
            }
            content.pages += UInt64(batch.entries.count)
            content.digest.add(frame)
            state = .receiving(content)
            return .stagePages(batch)
        case (.receiving, .deviceState) where !agreedCapabilities.contains(.deviceState):
            return fail(.unexpected("device state, but the session did not agree on the device-state capability"))
        case (.receiving(var content), .deviceState(let chunk)):
            guard chunk.epoch == content.epoch else { return fail(wrongEpoch("device state", chunk.epoch, content.epoch)) }
            guard chunk.offset == content.deviceStateBytes else {
                return fail(.unexpected("device-state chunk at offset \(chunk.offset), expected \(content.deviceStateBytes)"))
            }
            // Totals never pass their limits (checked on every frame), so these subtractions cannot underflow.
            guard UInt64(chunk.data.count) <= limits.deviceStateBytes - content.deviceStateBytes else {
                return fail(.malformed("checkpoint \(content.epoch) carries more than \(limits.deviceStateBytes) bytes of device state"))
            }
            content.deviceStateBytes += UInt64(chunk.data.count)
            content.digest.add(frame)
            state = .receiving(content)
            return .stageDeviceState(chunk)
        case (.receiving(var content), .diskWrites(let batch)):
            guard batch.epoch == content.epoch else { return fail(wrongEpoch("disk writes", batch.epoch, content.epoch)) }
            let (maxWrites, maxBytes) = content.isCatchUp ? (limits.catchUpDiskWrites, limits.catchUpDiskBytes)
                                                          : (limits.diskWrites, limits.diskBytes)
            guard UInt64(batch.entries.count) <= maxWrites - content.diskWrites else {
                return fail(.malformed("checkpoint \(content.epoch) carries more than \(maxWrites) disk changes"))
            }
            let bytes = batch.dataBytes
            guard bytes <= maxBytes - content.diskBytes else {
                return fail(.malformed("checkpoint \(content.epoch) carries more than \(maxBytes) bytes of disk data"))
            }
            content.diskWrites += UInt64(batch.entries.count)
            content.diskBytes += bytes
            content.digest.add(frame)
            state = .receiving(content)
            return .stageDiskWrites(batch)
        case (.receiving(let content), .checkpointEnd(let summary)):
            guard summary.epoch == content.epoch else { return fail(wrongEpoch("checkpoint end", summary.epoch, content.epoch)) }
            if let problem = Self.verify(content, against: summary) {
                return fail(.verificationFailed("checkpoint \(content.epoch): \(problem)"))
            }
            state = .ready(lastEpoch: content.epoch)
            return .verified(epoch: content.epoch)

        default:
            return fail(.unexpected("\(frame.type) while \(stateName)"))
        }
    }

    /// The I/O layer failed (replica write error, connection lost): the session is over.
    public mutating func abort() { state = .closed }

    private mutating func handshake(_ hello: Hello) -> Action {
        guard hello.version == understudyProtocolVersion else {
            return reject(.versionMismatch(local: understudyProtocolVersion, remote: hello.version))
        }
        do {
            try hello.identity.validate()
        } catch {
            return reject(.identityMismatch("the primary's identity is invalid: \(error)"))
        }
        if let mismatch = identity.mismatch(with: hello.identity) {
            return reject(.identityMismatch("the primary protects \(hello.identity); this backup holds \(identity): \(mismatch)"))
        }
        let missing = hello.requiredCapabilities.subtracting(capabilities)
        guard missing.isEmpty else {
            return reject(.capabilityMismatch("the primary requires \(missing), which this backup lacks"))
        }
        agreedCapabilities = hello.capabilities.intersection(capabilities)
        peerName = hello.nodeName
        state = .awaitingSync
        return .send(.welcome(Welcome(capabilities: agreedCapabilities, committedEpoch: committedEpoch)))
    }

    private mutating func reject(_ error: ProtocolError) -> Action {
        state = .closed
        return .reject(SessionClose(code: error.rejectCode, message: error.description))
    }

    private mutating func fail(_ error: ProtocolError) -> Action {
        state = .closed
        return .close(error)
    }

    private func wrongEpoch(_ what: String, _ got: UInt64, _ open: UInt64) -> ProtocolError {
        .unexpected("\(what) for epoch \(got) while epoch \(open) is open")
    }

    private static func verify(_ content: Content, against summary: ContentSummary) -> String? {
        if summary.pageCount != content.pages { return "end announces \(summary.pageCount) pages, \(content.pages) arrived" }
        if summary.deviceStateBytes != content.deviceStateBytes {
            return "end announces \(summary.deviceStateBytes) device-state bytes, \(content.deviceStateBytes) arrived"
        }
        if summary.diskWriteCount != content.diskWrites {
            return "end announces \(summary.diskWriteCount) disk writes, \(content.diskWrites) arrived"
        }
        if summary.digest != content.digest.value { return "content checksum does not match" }
        return nil
    }

    private var stateName: String {
        switch state {
        case .awaitingHello: "awaiting HELLO"
        case .awaitingSync: "awaiting SYNC_BEGIN"
        case .catchingUp(let base): "awaiting the catch-up checkpoint after \(base)"
        case .syncing: "receiving the initial sync"
        case .ready(let last): last.map { "between checkpoints (last \($0))" } ?? "awaiting the first checkpoint"
        case .receiving(let content): "receiving checkpoint \(content.epoch)"
        case .closed: "closed"
        }
    }
}
