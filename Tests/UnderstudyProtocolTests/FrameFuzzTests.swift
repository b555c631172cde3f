import Testing
@testable import UnderstudyProtocol

/// Random, truncated and corrupted input for every layer that reads peer bytes: `FrameStreamDecoder`,
/// `Message(frame:identity:)` (with `PageBatch`, `PageDecoder`, `DiskWriteBatch`), and both state
/// machines in each of their states. Nothing may crash; every input ends in a `ProtocolError` or
/// in a result that is consistent with the bytes. Seeded: the seed is printed, and
/// `UNDERSTUDY_TEST_SEED=<seed>` replays a run.
@Suite("Fuzz: frames, messages and state machines")
struct FrameFuzzTests {
    /// Small pages keep raw page frames short, so corruption lands in headers and fields often.
    static let identity = VMIdentity(id: "fuzz-vm", memorySize: 16 * 512, pageSize: 512)
    static let pageSize = 512
    /// The checkpoint the corpus carries content for; the "receiving" templates have it open.
    static let epoch: UInt64 = 4

    // MARK: Corpus

    struct Corpus {
        var frames: [Frame] = []
        /// Checkpoint `epoch`: begin, content frames, end (an honest sequence).
        var checkpoint: [Frame] = []
    }

    static func makeCorpus(_ rng: inout SplitMix64) -> Corpus {
        var corpus = Corpus()
        let encoder = PageEncoder(pageSize: pageSize, capabilities: .supported)
        var world = PageWorld(pageSize: pageSize, pageCount: 16)
        let base = PageFactory.random(pageSize, &rng)
        _ = world.send([(3, base)], epoch: 1, encoder: encoder)
        let (syncPages, _) = world.send([(0, PageFactory.zero(pageSize)), (1, PageFactory.random(pageSize, &rng)),
                                         (2, PageFactory.text(pageSize, &rng))], epoch: 0, encoder: encoder, type: .syncPages)
        var script = ContentScript(epoch: epoch)
        script.addPages([(4, PageFactory.zero(pageSize)), (5, PageFactory.random(pageSize, &rng)), (6, PageFactory.text(pageSize, &rng)),
                         (3, PageFactory.mutated(base, changes: 3, &rng))], world: &world, encoder: encoder)
        script.addDeviceState(rng.bytes(40), chunkSize: 24)
        script.addDiskWrites([(0, .bytes(rng.bytes(64))), (512, .bytes(PageFactory.text(300, &rng))), (1 << 20, .zeroes(length: 4096))])
        script.addPages([(15, PageFactory.sparse(pageSize, &rng))], world: &world, encoder: encoder)
        let begin = Message.checkpointBegin(epoch: epoch).frame
        let end = Message.checkpointEnd(script.summary).frame
        corpus.checkpoint = [begin] + script.frames + [end]
        corpus.frames = [
            Message.hello(Hello(identity: identity, nodeName: "fuzz-primary")).frame,
            Message.hello(Hello(version: 2, identity: identity, nodeName: "v2")).frame,
            Message.welcome(Welcome(capabilities: .supported, committedEpoch: 3)).frame,
            Message.reject(SessionClose(code: .busy, message: "busy")).frame,
            Message.syncBegin(SyncBegin(pageCount: 3)).frame,
            syncPages,
            Message.syncEnd(ContentSummary(epoch: 0, pageCount: 3, digest: Fixtures.digest([syncPages]))).frame,
            Message.ack(epoch: 2).frame,
            Message.heartbeat(Heartbeat(sequence: 7, senderTime: 1234)).frame,
            Message.goodbye(SessionClose(code: .normal, message: "bye")).frame,
        ] + corpus.checkpoint
        return corpus
    }

    // MARK: State-machine templates

    static func backupTemplates(_ corpus: Corpus) -> [(name: String, machine: BackupSessionStateMachine, knowsIdentity: Bool)] {
        let fresh = BackupSessionStateMachine(identity: identity, capabilities: .supported, committedEpoch: 0)
        var welcomed = fresh
        precondition(welcomed.received(corpus.frames[0]) == .send(.welcome(Welcome(capabilities: .supported, committedEpoch: 0))))
        var syncing = welcomed
        precondition(syncing.received(Message.syncBegin(SyncBegin(pageCount: 3)).frame) == .beginSync(SyncBegin(pageCount: 3)))
        var ready = welcomed
        _ = ready.received(Message.syncBegin(SyncBegin(pageCount: 0)).frame)
        precondition(ready.received(Message.syncEnd(ContentSummary(epoch: 0, pageCount: 0, digest: Fixtures.digest([]))).frame) == .syncComplete(pages: 0))
        precondition(ready.received(Message.checkpointBegin(epoch: epoch - 1).frame) == .beginEpoch(epoch - 1))
        precondition(ready.received(Message.checkpointEnd(ContentSummary(epoch: epoch - 1, pageCount: 0, digest: Fixtures.digest([]))).frame) == .verified(epoch: epoch - 1))
        var receiving = ready
        precondition(receiving.received(Message.checkpointBegin(epoch: epoch).frame) == .beginEpoch(epoch))
        return [("fresh", fresh, false), ("welcomed", welcomed, true), ("syncing", syncing, true),
                ("ready", ready, true), ("receiving", receiving, true)]
    }

    static func primaryTemplates() -> [(name: String, machine: PrimarySessionStateMachine)] {
        let fresh = PrimarySessionStateMachine(identity: identity, maxEpochsInFlight: 4)
        var syncing = fresh
        precondition(syncing.received(Message.welcome(Welcome(capabilities: .supported, committedEpoch: 0)).frame)
            == .startSync(.supported, backupCommittedEpoch: 0))
        var protecting = syncing
        protecting.syncFinished()
        for epoch in UInt64(1)...3 { protecting.checkpointSent(epoch) }
        return [("fresh", fresh), ("syncing", syncing), ("protecting", protecting)]
    }

    // MARK: Checker

    struct Checker {
        let seed: UInt64
        let backups: [(name: String, machine: BackupSessionStateMachine, knowsIdentity: Bool)]
        let primaries: [(name: String, machine: PrimarySessionStateMachine)]
        let decoder = PageDecoder(pageSize: FrameFuzzTests.pageSize)
        var inputs = 0
        var framesChecked = 0
        var decodedMessages = 0
        var errorKinds: [String: Int] = [:]

        /// Feeds `bytes` to a fresh stream decoder in random pieces and checks every frame it yields.
        /// Returns the frames, the error (if the stream broke) and the bytes left pending.
        @discardableResult
        mutating func feed(_ bytes: [UInt8], _ rng: inout SplitMix64, note: @autoclosure () -> String) -> ([Frame], ProtocolError?, Int) {
            inputs += 1
            var stream = FrameStreamDecoder()
            var frames: [Frame] = []
            var failure: ProtocolError?
            var offset = 0
            feeding: while offset < bytes.count {
                let piece = rng.bool(0.3) ? bytes.count - offset : rng.int(in: 1...max(1, min(64, bytes.count - offset)))
                stream.append(bytes[offset..<(offset + piece)])
                offset += piece
                while true {
                    do throws(ProtocolError) {
                        guard let frame = try stream.next() else { break }
                        frames.append(frame)
                    } catch {
                        failure = error
                        break feeding
                    }
                }
            }
            let consumed = frames.reduce(0) { $0 + $1.bytes.count }
            #expect(Array(bytes.prefix(consumed)) == frames.flatMap(\.bytes), "seed \(seed): frames are not the stream's bytes (\(note()))")
            if let failure {
                record(failure)
                // Only a bad header can break a stream; it is the header right after the last frame.
                let header = Array(bytes[consumed..<min(consumed + Frame.headerSize, bytes.count)])
                #expect(header.count == Frame.headerSize, "seed \(seed): error \(failure) before a whole header (\(note()))")
                if header.count == Frame.headerSize {
                    let length = header[1...4].reduce(0) { $0 << 8 | Int($1) }
                    if let type = FrameType(rawValue: header[0]) {
                        #expect(failure == .oversized(type: type.rawValue, length: length, limit: Frame.maxPayload), "seed \(seed): \(note())")
                    } else {
                        #expect(failure == .unknownFrameType(header[0]), "seed \(seed): \(note())")
                    }
                }
                // The decoder does not skip past a bad header.
                do throws(ProtocolError) { _ = try stream.next(); Issue.record("seed \(seed): decoder recovered after \(failure)") }
                catch { #expect(error == failure) }
            } else {
                #expect(consumed + stream.pendingByteCount == bytes.count, "seed \(seed): bytes lost (\(note()))")
            }
            for frame in frames { check(frame, note: note()) }
            return (frames, failure, stream.pendingByteCount)
        }

        mutating func record(_ error: ProtocolError) {
            errorKinds[error.kind, default: 0] += 1
            #expect(!error.description.isEmpty)
        }

        /// Checks one whole frame against every consumer.
        mutating func check(_ frame: Frame, note: @autoclosure () -> String) {
            framesChecked += 1
            #expect(frame.bytes.count == Frame.headerSize + frame.payloadCount)
            #expect(frame.bytes[0] == frame.type.rawValue)
            for identity in [nil, FrameFuzzTests.identity] {
                switch decode(frame, identity: identity) {
                case .failure(let error): record(error)
                case .success(let message):
                    decodedMessages += 1
                    checkDecoded(message, frame, note: note())
                }
            }
            for template in backups {
                var backup = template.machine
                let expected = decode(frame, identity: template.knowsIdentity ? FrameFuzzTests.identity : nil)
                let action = backup.received(frame)
                if case .failure(let error) = expected {
                    #expect(action == .close(error), "seed \(seed): backup \(template.name) \(note())")
                }
                #expect(backup.isClosed == action.endsSession, "seed \(seed): backup \(template.name) → \(action) (\(note()))")
                if case .verified = action {
                    #expect(frame.type == .checkpointEnd, "seed \(seed): verified on \(frame.type)")
                }
                if backup.isClosed {
                    #expect(backup.received(Message.heartbeat(Heartbeat(sequence: 0, senderTime: 0)).frame).isClose)
                }
            }
            for template in primaries {
                var primary = template.machine
                let action = primary.received(frame)
                if case .failure(let error) = decode(frame, identity: FrameFuzzTests.identity) {
                    #expect(action == .close(error), "seed \(seed): primary \(template.name) \(note())")
                }
                #expect(primary.isClosed == action.endsSession, "seed \(seed): primary \(template.name) → \(action) (\(note()))")
                if case .release(let through) = action {
                    #expect(frame.type == .ack && through <= 3)
                    #expect(primary.inFlight == (UInt64(1)...3).filter { $0 > through })
                }
            }
        }

        /// A message that decoded must be what the bytes say: re-encoding gives the same frame,
        /// except where the format deliberately drops information.
        mutating func checkDecoded(_ message: Message, _ frame: Frame, note: @autoclosure () -> String) {
            switch message {
            case .hello(let hello) where hello.version != understudyProtocolVersion:
                #expect(Array(frame.bytes[5..<13]) == understudyMagic)
                #expect(UInt16(frame.bytes[13]) << 8 | UInt16(frame.bytes[14]) == hello.version)
            case .reject(let close), .goodbye(let close):
                let code = UInt16(frame.bytes[5]) << 8 | UInt16(frame.bytes[6])
                if CloseCode(rawValue: code) != nil {
                    #expect(message.frame == frame, "seed \(seed): \(note())")
                } else {
                    #expect(close.code == .protocolError)
                }
            case .pages(let batch), .syncPages(let batch):
                #expect(message.frame == frame)
                var scratch = [UInt8](repeating: 0x5C, count: FrameFuzzTests.pageSize)
                for entry in batch.entries {
                    #expect(entry.index < FrameFuzzTests.identity.pageCount)
                    #expect(entry.data.upperBound <= frame.bytes.count)
                    do {
                        try scratch.withUnsafeMutableBytes { try decoder.decode(entry, of: batch, base: UnsafeRawBufferPointer($0), into: $0) }
                    } catch let error as ProtocolError {
                        record(error)
                        #expect(error.kind == "malformed", "seed \(seed): \(error)")
                    } catch {
                        Issue.record("seed \(seed): non-protocol error \(error)")
                    }
                }
            case .diskWrites(let batch):
                #expect(message.frame == frame)
                for entry in batch.entries {
                    do throws(ProtocolError) {
                        switch try batch.change(at: entry) {
                        case .write(_, let data): #expect(data.length == entry.length)
                        case .flush: #expect(entry.length == 0)
                        }
                    } catch {
                        record(error)
                        #expect(error.kind == "malformed", "seed \(seed): \(error)")
                    }
                }
            default:
                #expect(message.frame == frame, "seed \(seed): \(message) re-encodes differently (\(note()))")
            }
        }
    }

    // MARK: Mutations

    static func mutate(_ bytes: [UInt8], _ rng: inout SplitMix64, keepHeader: Bool) -> [UInt8] {
        var out = bytes
        let interesting: [UInt8] = [0, 1, 0x7F, 0x80, 0xFE, 0xFF]
        for _ in 0..<rng.int(in: 1...4) {
            let lower = keepHeader ? Frame.headerSize : 0
            guard out.count > lower else { break }
            let position = rng.bool(0.5) ? rng.int(in: lower..<min(out.count, lower + 40)) : rng.int(in: lower..<out.count)
            switch rng.int(in: 0..<10) {
            case 0...3: out[position] ^= UInt8(1) << UInt8(rng.int(in: 0..<8))
            case 4...5: out[position] = rng.byte()
            case 6...7: out[position] = interesting[rng.int(in: 0..<interesting.count)]
            case 8: out.remove(at: position)
            default: out.insert(rng.byte(), at: position)
            }
        }
        // Two mutations may cancel out: make sure the result differs.
        if out == bytes { out[out.count - 1] ^= 0x01 }
        if keepHeader, out.count != bytes.count {
            // Keep the header consistent with the resized payload so the frame is delivered.
            let length = UInt32(out.count - Frame.headerSize)
            out.replaceSubrange(1...4, with: [UInt8(length >> 24), UInt8(truncatingIfNeeded: length >> 16),
                                              UInt8(truncatingIfNeeded: length >> 8), UInt8(truncatingIfNeeded: length)])
        }
        return out
    }

    /// Random bytes, often shaped like a frame (a known type, a small length, maybe a HELLO prefix).
    static func randomStream(_ rng: inout SplitMix64) -> [UInt8] {
        var out: [UInt8] = []
        for _ in 0..<rng.int(in: 1...3) {
            switch rng.int(in: 0..<4) {
            case 0:
                out += rng.bytes(rng.int(in: 0...300))
            default:
                let types = FrameType.allCases
                let type = types[rng.int(in: 0..<types.count)]
                var payload: [UInt8] = rng.bytes(rng.int(in: 0...120))
                if type == .hello, rng.bool(0.6) {
                    payload = understudyMagic + [0, UInt8(rng.int(in: 0...2))] + payload
                }
                if (type == .pages || type == .syncPages || type == .diskWrites), payload.count >= 12, rng.bool(0.7) {
                    payload[8...11] = [0, 0, 0, UInt8(rng.int(in: 1...3))] // a plausible entry count
                }
                let length = payload.count
                out += [type.rawValue, 0, 0, UInt8(length >> 8), UInt8(length & 0xFF)] + payload
            }
        }
        return out
    }

    // MARK: Tests

    @Test("thousands of random, truncated and corrupted frames end cleanly")
    func fuzz() throws {
        let seed = TestSeed.make("FrameFuzzTests.fuzz")
        var rng = SplitMix64(seed: seed)
        let corpus = Self.makeCorpus(&rng)
        var checker = Checker(seed: seed, backups: Self.backupTemplates(corpus), primaries: Self.primaryTemplates())

        // 0. The valid corpus itself, as one stream cut at random places, yields exactly its frames.
        let all = corpus.frames.flatMap(\.bytes)
        for _ in 0..<50 {
            let (frames, error, pending) = checker.feed(all, &rng, note: "valid stream")
            #expect(frames == corpus.frames && error == nil && pending == 0, "seed \(seed)")
        }

        // 1. Random streams.
        for i in 0..<1500 {
            let bytes = Self.randomStream(&rng)
            checker.feed(bytes, &rng, note: "random stream \(i)")
        }

        // 2. Every frame truncated: at every length for short frames, at random lengths for long ones.
        for (n, frame) in corpus.frames.enumerated() {
            let lengths = frame.bytes.count <= 700 ? Array(0..<frame.bytes.count)
                : [0, 1, 4, 5, 6, frame.bytes.count - 1] + (0..<80).map { _ in rng.int(in: 0..<frame.bytes.count) }
            for length in lengths {
                let prefix = Array(frame.bytes.prefix(length))
                let (frames, error, pending) = checker.feed(prefix, &rng, note: "frame \(n) (\(frame.type)) cut at \(length)")
                #expect(frames.isEmpty && error == nil && pending == length, "seed \(seed): \(frame.type) cut at \(length)")
                // The same payload prefix announced honestly: the message layer sees a short payload.
                if length >= Frame.headerSize {
                    var honest = prefix
                    let payload = UInt32(length - Frame.headerSize)
                    honest.replaceSubrange(1...4, with: [UInt8(payload >> 24), UInt8(truncatingIfNeeded: payload >> 16),
                                                         UInt8(truncatingIfNeeded: payload >> 8), UInt8(truncatingIfNeeded: payload)])
                    checker.inputs += 1
                    checker.check(try Frame(validatedBytes: honest), note: "frame \(n) (\(frame.type)) with payload cut to \(payload)")
                }
            }
        }

        // 3. Corrupted frames: payload-only corruption (the frame is delivered) and anywhere.
        for i in 0..<2500 {
            let frame = corpus.frames[rng.int(in: 0..<corpus.frames.count)]
            let keepHeader = rng.bool(0.7)
            let bytes = Self.mutate(frame.bytes, &rng, keepHeader: keepHeader)
            let trailer = rng.bool(0.2) ? corpus.frames[rng.int(in: 0..<corpus.frames.count)].bytes : []
            let (frames, _, _) = checker.feed(bytes + trailer, &rng, note: "mutant \(i) of \(frame.type)")
            if keepHeader { #expect(!frames.isEmpty, "seed \(seed): header-preserving mutant \(i) was not delivered") }
        }

        // 4. Oversized length headers fail after 5 bytes, before any payload is awaited.
        var oversized = 0
        for type in FrameType.allCases {
            for length in [UInt32(Frame.maxPayload + 1), UInt32.max] + (0..<20).map({ _ in UInt32.random(in: UInt32(Frame.maxPayload + 1)...UInt32.max, using: &rng) }) {
                var stream = FrameStreamDecoder()
                stream.append([type.rawValue, UInt8(length >> 24), UInt8(truncatingIfNeeded: length >> 16),
                               UInt8(truncatingIfNeeded: length >> 8), UInt8(truncatingIfNeeded: length)])
                #expect(throws: ProtocolError.oversized(type: type.rawValue, length: Int(length), limit: Frame.maxPayload)) { try stream.next() }
                oversized += 1
            }
            // Exactly the limit is accepted (and awaited).
            var stream = FrameStreamDecoder()
            let limit = UInt32(Frame.maxPayload)
            stream.append([type.rawValue, UInt8(limit >> 24), UInt8(truncatingIfNeeded: limit >> 16), 0, 0])
            #expect(try stream.next() == nil)
        }
        checker.inputs += oversized

        // 5. Unknown frame types, with and without a payload.
        var unknown = 0
        for raw in UInt8.min...UInt8.max where FrameType(rawValue: raw) == nil {
            for payload in [[UInt8](), rng.bytes(rng.int(in: 1...16))] {
                let bytes = [raw, 0, 0, 0, UInt8(payload.count)] + payload
                let (_, error, _) = checker.feed(bytes, &rng, note: "unknown type \(raw)")
                #expect(error == .unknownFrameType(raw), "seed \(seed)")
                unknown += 1
            }
        }
        #expect(unknown == 2 * (256 - FrameType.allCases.count))

        print("[FrameFuzzTests.fuzz] seed \(seed): \(checker.inputs) inputs, \(checker.framesChecked) frames checked, "
              + "\(checker.decodedMessages) decoded, errors \(checker.errorKinds.sorted { $0.key < $1.key })")
        #expect(checker.inputs >= 5000)
        #expect(checker.framesChecked >= 3000)
        // The fuzzing reached the deep layers, not just the header check.
        for kind in ["truncated", "malformed", "unknownFrameType", "unexpected", "notUnderstudy"] {
            #expect(checker.errorKinds[kind, default: 0] > 0, "seed \(seed): no \(kind) errors seen")
        }
    }

    @Test("a checkpoint with any single corrupted frame is never committed")
    func corruptedCheckpointNeverCommits() throws {
        let seed = TestSeed.make("FrameFuzzTests.corruptedCheckpointNeverCommits")
        var rng = SplitMix64(seed: seed)
        let corpus = Self.makeCorpus(&rng)
        let ready = Self.backupTemplates(corpus).first { $0.name == "ready" }!.machine

        // The honest sequence commits.
        var honest = ready
        var actions = corpus.checkpoint.map { honest.received($0) }
        #expect(actions.last == .verified(epoch: Self.epoch))
        #expect(actions.dropLast().allSatisfy { !$0.endsSession })

        var closedEarly = 0
        var failedVerification = 0
        for i in 0..<600 {
            let target = rng.int(in: 0..<corpus.checkpoint.count)
            let mutated = Self.mutate(corpus.checkpoint[target].bytes, &rng, keepHeader: rng.bool(0.8))
            let stream = corpus.checkpoint[..<target].flatMap(\.bytes) + mutated + corpus.checkpoint[(target + 1)...].flatMap(\.bytes)
            var decoder = FrameStreamDecoder()
            decoder.append(stream)
            var backup = ready
            actions = []
            while !backup.isClosed {
                do throws(ProtocolError) {
                    guard let frame = try decoder.next() else { break }
                    actions.append(backup.received(frame))
                } catch {
                    break // the connection would be dropped here
                }
            }
            #expect(!actions.contains(.verified(epoch: Self.epoch)),
                    "seed \(seed): mutant \(i) of checkpoint frame \(target) (\(corpus.checkpoint[target].type)) was committed")
            #expect(!actions.contains { if case .verified = $0 { true } else { false } }, "seed \(seed): mutant \(i) committed something")
            if actions.last?.closeError?.kind == "verificationFailed" { failedVerification += 1 } else { closedEarly += 1 }
        }
        print("[FrameFuzzTests.corruptedCheckpointNeverCommits] seed \(seed): \(closedEarly) refused before the end, \(failedVerification) by verification")
        #expect(failedVerification > 0, "seed \(seed): no corruption reached the checksum")
    }
}

@Suite("Frame and FrameStreamDecoder")
struct FrameTests {
    @Test("validated bytes must match the announced length")
    func validatedBytesLength() throws {
        let frame = Message.ack(epoch: 5).frame
        #expect(try Frame(validatedBytes: frame.bytes) == frame)
        #expect(throws: ProtocolError.truncated("ack frame announces 8 payload bytes, has 7")) { try Frame(validatedBytes: Array(frame.bytes.dropLast())) }
        #expect(throws: ProtocolError.truncated("ack frame announces 8 payload bytes, has 9")) { try Frame(validatedBytes: frame.bytes + [0]) }
        #expect(throws: ProtocolError.unknownFrameType(0x99)) { try Frame(validatedBytes: [0x99, 0, 0, 0, 0]) }
    }

    /// Run in a child process: an older Frame.init(validatedBytes:) sliced bytes[0..<5] before any
    /// check and trapped, which would take the whole test run down.
    @Test("Frame(validatedBytes:) with fewer than 5 bytes throws instead of trapping")
    func validatedBytesShort() async {
        await #expect(processExitsWith: .success) {
            for count in 0..<Frame.headerSize {
                do throws(ProtocolError) {
                    _ = try Frame(validatedBytes: Array([0x30, 0, 0, 0, 8].prefix(count)))
                    fatalError("\(count) bytes accepted as a frame")
                } catch {
                    guard case .truncated = error else { fatalError("\(count) bytes: \(error)") }
                }
            }
        }
    }

    @Test("a stream yields frames as soon as they are whole and keeps the rest")
    func streamPieces() throws {
        let a = Message.ack(epoch: 1).frame
        let b = Message.heartbeat(Heartbeat(sequence: 2, senderTime: 3)).frame
        var stream = FrameStreamDecoder()
        #expect(try stream.next() == nil)
        stream.append(a.bytes + b.bytes.prefix(3))
        #expect(try stream.next() == a)
        #expect(try stream.next() == nil)
        #expect(stream.pendingByteCount == 3)
        stream.append(b.bytes.dropFirst(3))
        #expect(try stream.next() == b)
        #expect(stream.pendingByteCount == 0)
        // An empty payload is a whole frame.
        stream.append([FrameType.syncBegin.rawValue, 0, 0, 0, 0])
        #expect(try stream.next()?.payloadCount == 0)
    }

    @Test("an oversized header fails before its payload arrives; the limit itself is allowed")
    func oversizedHeader() throws {
        var stream = FrameStreamDecoder()
        let over = UInt32(Frame.maxPayload + 1)
        stream.append([0x21, UInt8(over >> 24), UInt8(truncatingIfNeeded: over >> 16), UInt8(truncatingIfNeeded: over >> 8), UInt8(truncatingIfNeeded: over)])
        #expect(throws: ProtocolError.oversized(type: 0x21, length: Frame.maxPayload + 1, limit: Frame.maxPayload)) { try stream.next() }
        let payload = [UInt8](repeating: 7, count: Frame.maxPayload)
        var ok = FrameStreamDecoder()
        let limit = UInt32(Frame.maxPayload)
        ok.append([0x22, UInt8(limit >> 24), UInt8(truncatingIfNeeded: limit >> 16), UInt8(truncatingIfNeeded: limit >> 8), UInt8(truncatingIfNeeded: limit)])
        #expect(try ok.next() == nil)
        ok.append(payload)
        let frame = try #require(try ok.next())
        #expect(frame.type == .deviceState && frame.payloadCount == Frame.maxPayload)
    }
}
