import UnderstudyProtocol

/// Valid protocol traffic for a small VM, built with the package's encoders: the seeds of the
/// protocol targets.
enum ProtocolSamples {
    /// 64 pages of 4 KiB and a 1 MiB disk: small enough that random page indices often hit.
    static let identity = VMIdentity(id: "fuzz-vm", memorySize: 64 * 4096, pageSize: 4096, diskSize: 1 << 20)

    /// (committed state, next state) pairs whose encodings are each form: a small change (lz4-delta),
    /// no usable base (lz4), an incompressible state of another size (raw).
    static var deviceStates: [(previous: [UInt8], state: [UInt8])] {
        let base = (0..<600).map { UInt8(truncatingIfNeeded: $0 * 7 / 5) }
        var changed = base
        changed[17] ^= 0x40
        changed[400] ^= 0x01
        var state: UInt64 = 0x2545_F491_4F6C_DD1D
        let random = (0..<300).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
        return [(base, changed), ([], base), (base, random)]
    }

    /// One page of each kind the encoder picks: zero, compressible, incompressible, and a small change (XOR delta).
    static var pageBatch: Frame {
        let pageSize = Int(identity.pageSize)
        let encoder = PageEncoder(pageSize: pageSize, capabilities: .supported)
        var builder = PageBatchBuilder(type: .pages, epoch: 7, capacity: 4 * encoder.maxEncodedSize)
        let page = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: 64)
        let lastSent = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: 64)
        defer { page.deallocate(); lastSent.deallocate() }
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func random() -> UInt8 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
        let fills: [(UInt64, (Int) -> UInt8)] = [
            (0, { _ in 0 }),
            (1, { UInt8(truncatingIfNeeded: $0 / 64) }),
            (2, { _ in random() }),
        ]
        for (index, fill) in fills {
            for offset in 0..<pageSize { page[offset] = fill(offset) }
            lastSent.initializeMemory(as: UInt8.self, repeating: 0)
            encoder.append(page: UnsafeRawBufferPointer(page), index: index, lastSent: lastSent, to: &builder)
        }
        // Page 3 was sent as page 2's content; now a few bytes of it changed.
        lastSent.copyMemory(from: UnsafeRawBufferPointer(page))
        page[100] ^= 0xFF
        page[2000] ^= 0x0F
        encoder.append(page: UnsafeRawBufferPointer(page), index: 3, lastSent: lastSent, to: &builder)
        return builder.finish()
    }

    /// A raw write, a compressible write, zeroes and a flush.
    static var diskWriteBatch: Frame {
        DiskWriteBatch.frame(epoch: 7, changes: [
            .write(offset: 512, data: .bytes((0..<512).map { UInt8(truncatingIfNeeded: $0 &* 37) })),
            .write(offset: 4096, data: .bytes([UInt8](repeating: 0x41, count: 4096))),
            .write(offset: 65536, data: .zeroes(length: 8192)),
            .flush,
        ])
    }

    /// A session in order: handshake, initial sync, one checkpoint, its acknowledgement, heartbeats, the end.
    static var messages: [Message] {
        let digest = [UInt8](repeating: 0xA5, count: EpochDigest.size)
        return [
            .hello(Hello(identity: identity, nodeName: "primary")),
            .welcome(Welcome(capabilities: .supported, committedEpoch: 6)),
            .syncBegin(SyncBegin(pageCount: 4)),
            .syncEnd(ContentSummary(epoch: 0, pageCount: 4, digest: digest)),
            .catchUpBegin(baseEpoch: 6),
            .checkpointBegin(epoch: 7),
            .pages(try! PageBatch(frame: pageBatch, pageSize: Int(identity.pageSize), pageCount: identity.pageCount)),
            .deviceState(DeviceStateChunk(epoch: 7, offset: 0, data: Array("QEVM device state".utf8))),
            .diskWrites(try! DiskWriteBatch(frame: diskWriteBatch)),
            .checkpointEnd(ContentSummary(epoch: 7, pageCount: 4, deviceStateBytes: 17, diskWriteCount: 4, digest: digest)),
            .ack(epoch: 7),
            .heartbeat(Heartbeat(sequence: 1, senderTime: 123_456)),
            .heartbeatEcho(Heartbeat(sequence: 1, senderTime: 123_456)),
            .reject(SessionClose(code: .busy, message: "busy")),
            .goodbye(SessionClose(code: .switchover, message: "switchover")),
        ]
    }
}
