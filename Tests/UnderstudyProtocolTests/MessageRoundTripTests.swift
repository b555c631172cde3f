import Foundation
import PropertyBased
import Testing
@testable import UnderstudyProtocol

@Suite("Message encode → frame → decode")
struct MessageRoundTripTests {
    static let identity = Fixtures.identity

    /// A page batch with one entry of every encoding.
    static func samplePageBatch(type: FrameType, epoch: UInt64) throws -> PageBatch {
        var world = PageWorld(pageSize: 4096, pageCount: 8)
        var rng = SplitMix64(seed: 11)
        let base = PageFactory.random(4096, &rng)
        let encoder = PageEncoder(pageSize: 4096, capabilities: .supported)
        _ = world.send([(3, base)], epoch: epoch, encoder: encoder, type: type)
        let (frame, encodings) = world.send(
            [(0, PageFactory.zero(4096)), (1, PageFactory.random(4096, &rng)), (2, PageFactory.text(4096, &rng)),
             (3, PageFactory.mutated(base, changes: 2, &rng))],
            epoch: epoch, encoder: encoder, type: type)
        #expect(encodings == [.zero, .raw, .lz4, .lz4Delta])
        return try PageBatch(frame: frame, pageSize: 4096, pageCount: identity.pageCount)
    }

    static func sampleDiskWrites(epoch: UInt64) throws -> DiskWriteBatch {
        var rng = SplitMix64(seed: 12)
        return try DiskWriteBatch(frame: DiskWriteBatch.frame(epoch: epoch, changes: [
            .write(offset: 0, data: .bytes(rng.bytes(512))),
            .write(offset: 4096, data: .bytes([UInt8](repeating: 0x5A, count: 4096))),
            .flush,
            .write(offset: 1 << 40, data: .zeroes(length: 1 << 20)),
        ]))
    }

    static func summary(_ epoch: UInt64, _ seed: UInt8) -> ContentSummary {
        ContentSummary(epoch: epoch, pageCount: 12345, deviceStateBytes: 678, diskWriteCount: 9,
                       digest: (0..<32).map { UInt8($0) &* 7 &+ seed })
    }

    /// One sample of every message, tagged with the frame type it must travel as.
    static func everyMessage() throws -> [(Message, FrameType)] {
        var cases: [(Message, FrameType)] = [
            (.hello(Hello(identity: identity, nodeName: "primary-a")), .hello),
            (.hello(Hello(identity: VMIdentity(id: "vm/ünïcødé-🚀", memorySize: 1 << 34, pageSize: 65536, diskSize: 1 << 40),
                          capabilities: [.lz4Pages, .deviceState], requiredCapabilities: [],
                          nodeName: "")), .hello),
            (.hello(Hello(identity: VMIdentity(id: "two-disks", memorySize: 1 << 20, diskSizes: [1 << 30, 512]), nodeName: "p")), .hello),
            (.hello(Hello(identity: identity, capabilities: Capabilities(rawValue: .max),
                          requiredCapabilities: Capabilities(rawValue: 1 << 63), nodeName: "n")), .hello),
            (.welcome(Welcome(capabilities: .supported, committedEpoch: 0)), .welcome),
            (.welcome(Welcome(capabilities: [], committedEpoch: .max)), .welcome),
            (.syncBegin(SyncBegin(pageCount: 64)), .syncBegin),
            (.syncPages(try samplePageBatch(type: .syncPages, epoch: 0)), .syncPages),
            (.syncEnd(summary(0, 1)), .syncEnd),
            (.catchUpBegin(baseEpoch: 41), .catchUpBegin),
            (.checkpointBegin(epoch: 1), .checkpointBegin),
            (.checkpointBegin(epoch: .max), .checkpointBegin),
            (.pages(try samplePageBatch(type: .pages, epoch: 77)), .pages),
            (.deviceState(DeviceStateChunk(epoch: 5, offset: 0, data: [])), .deviceState),
            (.deviceState(DeviceStateChunk(epoch: 5, offset: 1 << 33, data: Array(0...255))), .deviceState),
            (.diskWrites(try sampleDiskWrites(epoch: 5)), .diskWrites),
            (.checkpointEnd(summary(5, 2)), .checkpointEnd),
            (.ack(epoch: 0), .ack),
            (.ack(epoch: 123_456_789), .ack),
            (.heartbeat(Heartbeat(sequence: 1, senderTime: .max)), .heartbeat),
            (.heartbeatEcho(Heartbeat(sequence: .max, senderTime: 0)), .heartbeatEcho),
            (.guestInput(epoch: 7, frame: Array(0...59)), .guestInput),
            (.guestInput(epoch: .max, frame: []), .guestInput),
        ]
        for code in [CloseCode.normal, .versionMismatch, .identityMismatch, .capabilityMismatch, .busy, .protocolError, .internalError] {
            cases.append((.reject(SessionClose(code: code, message: "reason: \(code) ✓")), .reject))
            cases.append((.goodbye(SessionClose(code: code, message: "")), .goodbye))
        }
        return cases
    }

    @Test("every message case round-trips through its frame")
    func everyCase() throws {
        let cases = try Self.everyMessage()
        // Every frame type is covered.
        #expect(Set(cases.map(\.1)) == Set(FrameType.allCases))
        for (message, type) in cases {
            let frame = message.frame
            #expect(frame.type == type)
            #expect(frame.bytes[0] == type.rawValue)
            let length = frame.bytes[1...4].reduce(0) { $0 << 8 | Int($1) }
            #expect(length == frame.payloadCount)
            let decoded = try Message(frame: frame, identity: Self.identity)
            #expect(decoded == message)
            #expect(decoded.frame == frame, "re-encoding \(type) is not byte-identical")
            // Through the stream decoder, one byte at a time.
            var stream = FrameStreamDecoder()
            var out: [Frame] = []
            for byte in frame.bytes {
                stream.append(CollectionOfOne(byte))
                if let f = try stream.next() { out.append(f) }
            }
            #expect(out == [frame])
            #expect(stream.pendingByteCount == 0)
            // Without an identity only the page batches are refused.
            switch (type, decode(frame, identity: nil)) {
            case (.pages, .failure(let e)), (.syncPages, .failure(let e)):
                #expect(e == .unexpected("\(type) before the handshake"))
            case (.pages, .success), (.syncPages, .success):
                Issue.record("page batch decoded without an identity")
            case (_, .success(let m)):
                #expect(m == message)
            case (_, .failure(let e)):
                Issue.record("\(type) failed without identity: \(e)")
            }
        }
    }

    @Test("exact wire layout of a few frames")
    func wireLayout() {
        #expect(Message.ack(epoch: 0x0102_0304_0506_0708).frame.bytes == [0x30, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8])
        #expect(Message.checkpointBegin(epoch: 1).frame.bytes == [0x20, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1])
        #expect(Message.goodbye(SessionClose(code: .busy, message: "hi")).frame.bytes == [0x50, 0, 0, 0, 6, 0, 4, 0, 2, 0x68, 0x69])
        let hello = Message.hello(Hello(identity: VMIdentity(id: "v", memorySize: 8192, pageSize: 4096, diskSize: 0x200),
                                        capabilities: [.lz4Pages], requiredCapabilities: [], nodeName: "p")).frame.bytes
        #expect(Array(hello[5..<13]) == understudyMagic)
        #expect(Array(hello[13..<15]) == [0, 1])
        #expect(hello.count == 5 + 8 + 2 + 3 + 8 + 4 + 8 + 8 + 8 + 3)
        #expect(Array(hello[30..<38]) == [0, 0, 0, 0, 0, 0, 2, 0], "disk size follows the page size")
        #expect(Message.welcome(Welcome(capabilities: .supported, committedEpoch: 3)).frame.bytes
            == [0x02, 0, 0, 0, 18, 0, 1, 0, 0, 0, 0, 0, 0, 0x01, 0xFF, 0, 0, 0, 0, 0, 0, 0, 3], "capability bits 0 to 8")
    }

    @Test("a HELLO lists the disks only when there are several, and their sizes must add up")
    func helloDiskLayout() throws {
        let one = VMIdentity(id: "v", memorySize: 8192, diskSize: 0x200)
        let oneDisk = Message.hello(Hello(identity: one, nodeName: "p")).frame.bytes
        let two = VMIdentity(id: "v", memorySize: 8192, diskSizes: [0x200, 0x400])
        let twoDisks = Message.hello(Hello(identity: two, nodeName: "p")).frame.bytes
        #expect(twoDisks.count == oneDisk.count + 2 + 16, "one disk: the HELLO of earlier versions; two: count and sizes appended")
        #expect(Array(twoDisks[30..<38]) == [0, 0, 0, 0, 0, 0, 6, 0], "the disk size field holds the total")
        guard case .hello(let decoded) = try Message(frame: Message.hello(Hello(identity: two, nodeName: "p")).frame, identity: nil) else {
            Issue.record("not a HELLO")
            return
        }
        #expect(decoded.identity.diskSizes == [0x200, 0x400])
        #expect(decoded.identity.mismatch(with: VMIdentity(id: "v", memorySize: 8192, diskSize: 0x600))?.contains("2 disks") == true,
                "one disk of the same total is another VM")
        // A layout whose sizes do not add up to the announced total, and one with a single disk.
        for (sizes, expected) in [([UInt64(0x200), 0x200], "add up"), ([0x600], "2 to 8")] {
            var bytes = Array(twoDisks.dropLast(18))
            bytes += [0, UInt8(sizes.count)]
            for size in sizes { bytes += (0..<8).map { UInt8(truncatingIfNeeded: size >> (56 - 8 * UInt64($0))) } }
            let length = UInt32(bytes.count - 5)
            bytes.replaceSubrange(1..<5, with: (0..<4).map { UInt8(truncatingIfNeeded: length >> (24 - 8 * UInt32($0))) })
            let frame = try Frame(validatedBytes: bytes)
            let error = #expect(throws: ProtocolError.self) { _ = try Message(frame: frame, identity: nil) }
            #expect("\(error.map { "\($0)" } ?? "")".contains(expected))
        }
    }

    @Test("random field values round-trip")
    func randomFields() async throws {
        await propertyCheck(count: 200, input: Gen.uint64(), Gen.uint64(), Gen.uint64(), Gen.letterOrNumber.string(of: 0...40)) {
            a, b, c, text in
            let digest = (0..<32).map { UInt8(truncatingIfNeeded: a >> UInt64($0 % 8 * 8)) ^ UInt8($0) }
            let id = text.isEmpty ? "x" : text
            let messages: [Message] = [
                .hello(Hello(identity: VMIdentity(id: id, memorySize: a, pageSize: UInt32(truncatingIfNeeded: b)),
                             capabilities: Capabilities(rawValue: b), requiredCapabilities: Capabilities(rawValue: c), nodeName: text)),
                .welcome(Welcome(capabilities: Capabilities(rawValue: a), committedEpoch: b)),
                .syncBegin(SyncBegin(pageCount: a)),
                .syncEnd(ContentSummary(epoch: a, pageCount: b, deviceStateBytes: c, diskWriteCount: a ^ c, digest: digest)),
                .checkpointEnd(ContentSummary(epoch: c, pageCount: a, deviceStateBytes: b, diskWriteCount: 0, digest: digest)),
                .checkpointBegin(epoch: a), .ack(epoch: b),
                .heartbeat(Heartbeat(sequence: a, senderTime: c)),
                .deviceState(DeviceStateChunk(epoch: a, offset: b, data: Array(text.utf8))),
                .reject(SessionClose(code: CloseCode(rawValue: UInt16(a % 7))!, message: text)),
                .goodbye(SessionClose(code: CloseCode(rawValue: UInt16(b % 7))!, message: text + "é")),
            ]
            for message in messages {
                #expect(decode(message.frame, identity: Self.identity) == .success(message))
            }
        }
    }

    @Test("a HELLO of another version decodes only its version, whatever follows")
    func helloOtherVersion() throws {
        let v2 = Message.hello(Hello(version: 2, identity: Self.identity, nodeName: "future")).frame
        guard case .hello(let hello) = try Message(frame: v2, identity: nil) else { Issue.record("not a hello"); return }
        #expect(hello.version == 2)
        #expect(hello.identity.id == "")
        // A future layout with arbitrary bytes after the version still decodes as a version-7 HELLO.
        let future = rawFrame(.hello) { w in
            w.write(bytes: understudyMagic); w.write(UInt16(7)); w.write(bytes: [0xFF, 0xFE, 0xFD])
        }
        guard case .hello(let h7) = try Message(frame: future, identity: nil) else { Issue.record("not a hello"); return }
        #expect(h7.version == 7)
        // Missing version: truncated. Wrong magic: not Understudy.
        let noVersion = rawFrame(.hello) { $0.write(bytes: understudyMagic) }
        #expect(decode(noVersion, identity: nil) == .failure(.truncated("hello: needs 2 more bytes at offset 13, has 0")))
        let badMagic = rawFrame(.hello) { w in w.write(bytes: Array("GET / HT".utf8)); w.write(UInt16(1)) }
        #expect(decode(badMagic, identity: nil) == .failure(.notUnderstudy))
        #expect(decode(rawFrame(.hello) { $0.write(bytes: [0x55]) }, identity: nil) == .failure(.notUnderstudy))
    }

    @Test("unknown close codes keep their message")
    func unknownCloseCode() throws {
        let frame = rawFrame(.goodbye) { w in w.write(UInt16(999)); w.write(string: "from the future") }
        #expect(try Message(frame: frame, identity: nil) == .goodbye(SessionClose(code: .protocolError, message: "from the future")))
    }

    @Test("trailing bytes and short payloads are errors for every fixed-layout message")
    func trailingAndShort() throws {
        for (message, type) in try Self.everyMessage() {
            var extended = message.frame.bytes
            extended.append(0)
            extended.replaceSubrange(1...4, with: withUnsafeBytes(of: UInt32(extended.count - 5).bigEndian, Array.init))
            let longer = try Frame(validatedBytes: extended)
            switch (type, decode(longer, identity: Self.identity)) {
            case (.deviceState, .success(.deviceState(let chunk))):
                // A device-state chunk is "the rest of the payload": one byte more data.
                guard case .deviceState(let original) = message else { return }
                #expect(chunk.data == original.data + [0])
            case (.guestInput, .success(.guestInput(let epoch, let frame))):
                // So is a guest-input frame: one byte more of the Ethernet frame.
                guard case .guestInput(let originalEpoch, let original) = message else { return }
                #expect(epoch == originalEpoch && frame == original + [0])
            case (.hello, .success(let m)):
                Issue.record("HELLO with a trailing byte decoded: \(m)")
            case (_, .failure(let e)):
                #expect(e.kind == "malformed" || e.kind == "truncated", "\(type): \(e)")
            case (_, .success(let m)):
                Issue.record("\(type) with a trailing byte decoded as \(m)")
            }
        }
    }

    @Test("strings longer than the u16 prefix are cut at a character boundary")
    func longStringsTruncateCleanly() throws {
        let long = String(repeating: "é", count: 40_000) // 80,000 bytes; byte 65535 is inside a character
        let frame = Message.goodbye(SessionClose(code: .normal, message: long)).frame
        guard case .goodbye(let close) = try Message(frame: frame, identity: nil) else { Issue.record("not a goodbye"); return }
        #expect(close.message.utf8.count <= Int(UInt16.max))
        #expect(long.hasPrefix(close.message))
    }

    @Test("disk-write batches keep every write's bytes")
    func diskWriteContents() throws {
        var rng = SplitMix64(seed: 21)
        let random = rng.bytes(3000)
        let text = PageFactory.text(10_000, &rng)
        let changes: [DiskChange] = [
            .write(offset: 512, data: .bytes(random)), .write(offset: 0, data: .bytes(text)), .flush,
            .write(offset: UInt64.max - 4096, data: .zeroes(length: 4096)), .write(offset: 7, data: .bytes([1])),
        ]
        let batch = try DiskWriteBatch(frame: DiskWriteBatch.frame(epoch: 3, changes: changes))
        #expect(batch.epoch == 3)
        #expect(batch.entries.map(\.encoding) == [.raw, .lz4, .flush, .zeroes, .raw])
        #expect(batch.entries.map(\.length) == [3000, 10_000, 0, 4096, 1])
        #expect(try batch.entries.map { entry throws(ProtocolError) in try batch.change(at: entry) } == changes)
        #expect(batch.entries[1].data.count < 10_000 * 3 / 4)
    }

    @Test("disk changes of any size pack into frames that replay to the same changes")
    func diskWritesSplitIntoFrames() throws {
        var rng = SplitMix64(seed: 22)
        let big = rng.bytes(3 * DiskWriteBatch.maxEntryBytes + 100)
        let small = (0..<40).map { DiskChange.write(offset: UInt64($0) * 100_000, data: .bytes(rng.bytes(90_000))) }
        let changes: [DiskChange] = [.write(offset: 4096, data: .bytes(big)), .flush] + small
            + [.write(offset: 0, data: .zeroes(length: 1 << 33)), .flush]
        let (frames, entries) = DiskWriteBatch.frames(epoch: 6, changes: changes)
        #expect(frames.count > 4)
        var replayed: [DiskChange] = []
        for frame in frames {
            #expect(frame.payloadCount <= 2 * DiskWriteBatch.maxEntryBytes)
            let batch = try DiskWriteBatch(frame: frame)
            #expect(batch.epoch == 6)
            for entry in batch.entries { replayed.append(try batch.change(at: entry)) }
        }
        // The big write and the huge zeroing arrive cut into pieces; joined up they are the originals.
        let pieces = replayed[0..<4].map { change -> [UInt8] in
            guard case .write(_, .bytes(let bytes)) = change else { return [] }
            return bytes
        }
        #expect(pieces.joined().elementsEqual(big))
        #expect(Array(replayed[4..<45]) == [.flush] + small)
        #expect(replayed[45...].filter { $0 == .flush }.count == 1)
        let zeroed = replayed[45...].reduce(0) { total, change in
            if case .write(_, .zeroes(let length)) = change { total + length } else { total }
        }
        #expect(zeroed == 1 << 33)
        #expect(replayed.count == entries)
    }

    @Test("disk-write batch limits")
    func diskWriteLimits() throws {
        func batch(_ body: (inout WireWriter) -> Void) -> ProtocolError? {
            do throws(ProtocolError) { _ = try DiskWriteBatch(frame: rawFrame(.diskWrites) { w in w.write(UInt64(1)); body(&w) }); return nil }
            catch { return error }
        }
        #expect(batch { $0.write(UInt32(0)) }?.kind == "malformed")
        #expect(batch { $0.write(UInt32(DiskWriteBatch.maxEntries + 1)) }?.kind == "malformed")
        // Zero length; range overflowing u64.
        #expect(batch { w in w.write(UInt32(1)); w.write(UInt64(0)); w.write(UInt32(0)); w.write(UInt8(2)) }?.kind == "malformed")
        #expect(batch { w in w.write(UInt32(1)); w.write(UInt64.max); w.write(UInt32(2)); w.write(UInt8(2)) }?.kind == "malformed")
        // Unknown encoding; a flush with a range.
        #expect(batch { w in w.write(UInt32(1)); w.write(UInt64(0)); w.write(UInt32(1)); w.write(UInt8(4)) }?.kind == "malformed")
        #expect(batch { w in w.write(UInt32(1)); w.write(UInt64(0)); w.write(UInt32(1)); w.write(UInt8(3)) }?.kind == "malformed")
        #expect(batch { w in w.write(UInt32(1)); w.write(UInt64(8)); w.write(UInt32(0)); w.write(UInt8(3)) }?.kind == "malformed")
        #expect(batch { w in w.write(UInt32(1)); w.write(UInt64(0)); w.write(UInt32(0)); w.write(UInt8(3)) } == nil)
        // Raw write longer than a frame.
        #expect(batch { w in w.write(UInt32(1)); w.write(UInt64(0)); w.write(UInt32(Frame.maxPayload + 1)); w.write(UInt8(0)) }?.kind == "malformed")
        // LZ4 length not below the write length.
        #expect(batch { w in w.write(UInt32(1)); w.write(UInt64(0)); w.write(UInt32(8)); w.write(UInt8(1)); w.write(UInt32(8)); w.write(bytes: [UInt8](repeating: 0, count: 8)) }?.kind == "malformed")
        // Zeroes may be huge (no data travels).
        #expect(batch { w in w.write(UInt32(1)); w.write(UInt64(0)); w.write(UInt32.max); w.write(UInt8(2)) } == nil)
        // Truncated raw data.
        #expect(batch { w in w.write(UInt32(1)); w.write(UInt64(0)); w.write(UInt32(10)); w.write(UInt8(0)); w.write(bytes: [1, 2, 3]) }?.kind == "truncated")
    }

    @Test("a disk-write batch decodes to at most one frame's worth, checked before anything is decoded")
    func diskWriteDecodedSizeLimit() throws {
        // 4 MiB of one byte is an LZ4 block of about 16 KiB: 255 of them fit a 4 MiB frame and would decode to about 1 GiB.
        let block = [UInt8](repeating: 0, count: Frame.maxPayload).withUnsafeBytes { source in
            var out = [UInt8](repeating: 0, count: LZ4Block.bound(Frame.maxPayload))
            let size = out.withUnsafeMutableBytes { LZ4Block.compress(source, into: $0) }
            return Array(out[0..<size])
        }
        func lz4Writes(_ count: Int) -> Frame {
            rawFrame(.diskWrites) { w in
                w.write(UInt64(1))
                w.write(UInt32(count))
                for position in 0..<count {
                    w.write(UInt64(position) * UInt64(Frame.maxPayload))
                    w.write(UInt32(Frame.maxPayload))
                    w.write(DiskWriteEncoding.lz4.rawValue)
                    w.write(UInt32(block.count))
                    w.write(bytes: block)
                }
            }
        }
        #expect(try DiskWriteBatch(frame: lz4Writes(1)).entries.count == 1)
        #expect(throws: ProtocolError.malformed("disk write 1: \(Frame.maxPayload) data bytes take the batch past the \(Frame.maxPayload)-byte limit")) {
            try DiskWriteBatch(frame: lz4Writes(2))
        }
        // Raw and LZ4 writes count together; zeroed ranges and flushes carry no data.
        let mixed = rawFrame(.diskWrites) { w in
            w.write(UInt64(1)); w.write(UInt32(3))
            w.write(UInt64(0)); w.write(UInt32(UInt32.max)); w.write(DiskWriteEncoding.zeroes.rawValue)
            w.write(UInt64(0)); w.write(UInt32(Frame.maxPayload - 1)); w.write(DiskWriteEncoding.zeroes.rawValue)
            w.write(UInt64(0)); w.write(UInt32(3)); w.write(DiskWriteEncoding.raw.rawValue); w.write(bytes: [1, 2, 3])
        }
        #expect(try DiskWriteBatch(frame: mixed).entries.count == 3)
    }

    @Test("the disk-write encoder refuses writes its parser would refuse")
    func diskWriteEncoderRefusesUnparseable() async {
        await #expect(processExitsWith: .failure) { _ = DiskWriteBatch.frame(epoch: 1, changes: [.write(offset: 0, data: .bytes([]))]) }
        await #expect(processExitsWith: .failure) { _ = DiskWriteBatch.frame(epoch: 1, changes: [.write(offset: 0, data: .zeroes(length: 0))]) }
        await #expect(processExitsWith: .failure) { _ = DiskWriteBatch.frame(epoch: 1, changes: [.write(offset: .max, data: .zeroes(length: 2))]) }
    }
}

@Suite("EpochDigest")
struct EpochDigestTests {
    @Test func sha256KnownVector() {
        let hex = EpochDigest.sha256(Array("abc".utf8)).map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
        #expect(hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test func xxh3KnownVectors() {
        // The reference values printed by `xxh128sum` (Debian's xxhash package) for "" and "abc".
        #expect(hex(Array("".utf8).withUnsafeBytes { EpochDigest.xxh3($0) }) == "99aa06d3014798d86001c324468d497f")
        #expect(hex(Array("abc".utf8).withUnsafeBytes { EpochDigest.xxh3($0) }) == "06b05ab6733a618578af5f94892f3950")
    }

    @Test func theAgreedCapabilitiesChooseTheFrameChecksum() {
        #expect(EpochDigest.FrameChecksum(agreed: .supported) == .xxh3)
        #expect(EpochDigest.FrameChecksum(agreed: Capabilities.supported.subtracting(.xxh3Digest)) == .sha256)
        #expect(EpochDigest.FrameChecksum.xxh3.size == 16 && EpochDigest.FrameChecksum.sha256.size == 32)
    }

    @Test(arguments: [EpochDigest.FrameChecksum.sha256, .xxh3])
    func digestIsHashOfFrameHashes(frameChecksum: EpochDigest.FrameChecksum) {
        let a = Message.ack(epoch: 1).frame
        let b = Message.ack(epoch: 2).frame
        var d = EpochDigest(frameChecksum: frameChecksum)
        d.add(a)
        d.add(frameDigest: frameChecksum(b.bytes))
        #expect(d.value == EpochDigest.sha256(frameChecksum(a.bytes) + frameChecksum(b.bytes)))
        #expect(d.value.count == EpochDigest.size)
        // Order, repetition and omission all change it.
        #expect(Fixtures.digest([a, b], frameChecksum: frameChecksum) == d.value)
        #expect(Fixtures.digest([b, a], frameChecksum: frameChecksum) != d.value)
        #expect(Fixtures.digest([a, b, b], frameChecksum: frameChecksum) != d.value)
        #expect(Fixtures.digest([a], frameChecksum: frameChecksum) != d.value)
        #expect(Fixtures.digest([], frameChecksum: frameChecksum) == EpochDigest.sha256([]))
        // The two checksums never agree, so a peer that used the other one is caught.
        let other: EpochDigest.FrameChecksum = frameChecksum == .xxh3 ? .sha256 : .xxh3
        #expect(Fixtures.digest([a, b], frameChecksum: other) != d.value)
    }

    private func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
}
