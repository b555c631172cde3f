extension Message {
    /// The frame that carries this message. Page batches and disk-write batches already are frames.
    public var frame: Frame {
        switch self {
        case .hello(let hello):
            Frame(.hello) { w in
                w.write(bytes: understudyMagic)
                w.write(hello.version)
                w.write(string: hello.identity.id)
                w.write(hello.identity.memorySize)
                w.write(hello.identity.pageSize)
                w.write(hello.identity.diskSize)
                w.write(hello.capabilities.rawValue)
                w.write(hello.requiredCapabilities.rawValue)
                w.write(string: hello.nodeName)
                // Only with several disks, so a one-disk HELLO is what earlier versions send; an
                // earlier backup refuses the longer frame (it expects the frame's end here)
                // rather than take several disks for one.
                if hello.identity.diskSizes.count > 1 {
                    w.write(UInt16(hello.identity.diskSizes.count))
                    for size in hello.identity.diskSizes { w.write(size) }
                }
            }
        case .welcome(let welcome):
            Frame(.welcome) { w in
                w.write(welcome.version)
                w.write(welcome.capabilities.rawValue)
                w.write(welcome.committedEpoch)
            }
        case .reject(let close): Self.closeFrame(.reject, close)
        case .goodbye(let close): Self.closeFrame(.goodbye, close)
        case .syncBegin(let begin): Frame(.syncBegin) { $0.write(begin.pageCount) }
        case .syncPages(let batch), .pages(let batch): batch.frame
        case .syncEnd(let summary): Self.summaryFrame(.syncEnd, summary)
        case .catchUpBegin(let base): Frame(.catchUpBegin) { $0.write(base) }
        case .checkpointBegin(let epoch): Frame(.checkpointBegin) { $0.write(epoch) }
        case .deviceState(let chunk):
            Frame(.deviceState, capacity: DeviceStateChunk.headerSize + chunk.data.count) { w in
                w.write(chunk.epoch)
                w.write(chunk.offset)
                w.write(bytes: chunk.data)
            }
        case .diskWrites(let batch): batch.frame
        case .checkpointEnd(let summary): Self.summaryFrame(.checkpointEnd, summary)
        case .ack(let epoch): Frame(.ack) { $0.write(epoch) }
        case .heartbeat(let beat): Self.heartbeatFrame(.heartbeat, beat)
        case .heartbeatEcho(let beat): Self.heartbeatFrame(.heartbeatEcho, beat)
        case .guestInput(let epoch, let frame):
            Frame(.guestInput, capacity: 8 + frame.count) { w in
                w.write(epoch)
                w.write(bytes: frame)
            }
        }
    }

    /// Decodes and validates a frame.
    /// - Parameter identity: the session's VM, needed to bounds-check page batches; nil before the handshake.
    public init(frame: Frame, identity: VMIdentity?) throws(ProtocolError) {
        var r = frame.reader()
        switch frame.type {
        case .hello:
            guard r.remaining >= understudyMagic.count, try r.readBytes(understudyMagic.count) == understudyMagic else {
                throw .notUnderstudy
            }
            let version = try r.readUInt16()
            // Everything after the version may differ between versions: compare before parsing it.
            guard version == understudyProtocolVersion else {
                self = .hello(Hello(version: version, identity: VMIdentity(id: "", memorySize: 0), nodeName: ""))
                return
            }
            let id = try r.readString()
            var identity = VMIdentity(id: id, memorySize: try r.readUInt64(), pageSize: try r.readUInt32(),
                                      diskSize: try r.readUInt64())
            let capabilities = Capabilities(rawValue: try r.readUInt64())
            let required = Capabilities(rawValue: try r.readUInt64())
            let node = try r.readString()
            if r.remaining > 0 { identity.diskSizes = try Self.readDiskSizes(&r, total: identity.diskSize) }
            self = .hello(Hello(version: version, identity: identity, capabilities: capabilities,
                                requiredCapabilities: required, nodeName: node))
        case .welcome:
            self = .welcome(Welcome(version: try r.readUInt16(), capabilities: Capabilities(rawValue: try r.readUInt64()),
                                    committedEpoch: try r.readUInt64()))
        case .reject: self = .reject(try Self.readClose(&r))
        case .goodbye: self = .goodbye(try Self.readClose(&r))
        case .syncBegin: self = .syncBegin(SyncBegin(pageCount: try r.readUInt64()))
        case .syncPages, .pages:
            guard let identity else { throw .unexpected("\(frame.type) before the handshake") }
            let batch = try PageBatch(frame: frame, pageSize: Int(identity.pageSize), pageCount: identity.pageCount)
            self = frame.type == .pages ? .pages(batch) : .syncPages(batch)
            return
        case .syncEnd: self = .syncEnd(try Self.readSummary(&r))
        case .catchUpBegin: self = .catchUpBegin(baseEpoch: try r.readUInt64())
        case .checkpointBegin: self = .checkpointBegin(epoch: try r.readUInt64())
        case .deviceState:
            let epoch = try r.readUInt64()
            let offset = try r.readUInt64()
            self = .deviceState(DeviceStateChunk(epoch: epoch, offset: offset, data: try r.readBytes(r.remaining)))
        case .diskWrites:
            self = .diskWrites(try DiskWriteBatch(frame: frame))
            return
        case .checkpointEnd: self = .checkpointEnd(try Self.readSummary(&r))
        case .ack: self = .ack(epoch: try r.readUInt64())
        case .heartbeat: self = .heartbeat(Heartbeat(sequence: try r.readUInt64(), senderTime: try r.readUInt64()))
        case .heartbeatEcho: self = .heartbeatEcho(Heartbeat(sequence: try r.readUInt64(), senderTime: try r.readUInt64()))
        case .guestInput: self = .guestInput(epoch: try r.readUInt64(), frame: try r.readBytes(r.remaining))
        }
        try r.expectEnd()
    }

    private static func heartbeatFrame(_ type: FrameType, _ beat: Heartbeat) -> Frame {
        Frame(type) { w in
            w.write(beat.sequence)
            w.write(beat.senderTime)
        }
    }

    private static func closeFrame(_ type: FrameType, _ close: SessionClose) -> Frame {
        Frame(type) { w in
            w.write(close.code.rawValue)
            w.write(string: close.message)
        }
    }

    /// The disk layout a HELLO of a VM with several disks ends with; the sizes must add up to the
    /// total the HELLO announced before.
    private static func readDiskSizes(_ r: inout WireReader, total: UInt64) throws(ProtocolError) -> [UInt64] {
        let count = Int(try r.readUInt16())
        guard (2...VMIdentity.maxDiskCount).contains(count) else {
            throw .malformed("HELLO lists \(count) disks; a disk layout has 2 to \(VMIdentity.maxDiskCount)")
        }
        var sizes: [UInt64] = []
        for _ in 0..<count { sizes.append(try r.readUInt64()) }
        let (sum, overflow) = sizes.reduce((UInt64(0), false)) { partial, size in
            let (next, carry) = partial.0.addingReportingOverflow(size)
            return (next, partial.1 || carry)
        }
        guard !overflow, sum == total else {
            throw .malformed("HELLO's disk sizes add up to \(overflow ? "more than 2^64" : "\(sum)") bytes, not the announced \(total)")
        }
        return sizes
    }

    private static func readClose(_ r: inout WireReader) throws(ProtocolError) -> SessionClose {
        let raw = try r.readUInt16()
        // An unknown code from a newer peer still ends the session; keep its message.
        return SessionClose(code: CloseCode(rawValue: raw) ?? .protocolError, message: try r.readString())
    }

    private static func summaryFrame(_ type: FrameType, _ s: ContentSummary) -> Frame {
        precondition(s.digest.count == EpochDigest.size)
        return Frame(type) { w in
            w.write(s.epoch)
            w.write(s.pageCount)
            w.write(s.deviceStateBytes)
            w.write(s.diskWriteCount)
            w.write(bytes: s.digest)
        }
    }

    private static func readSummary(_ r: inout WireReader) throws(ProtocolError) -> ContentSummary {
        ContentSummary(epoch: try r.readUInt64(), pageCount: try r.readUInt64(), deviceStateBytes: try r.readUInt64(),
                       diskWriteCount: try r.readUInt64(), digest: try r.readBytes(EpochDigest.size))
    }
}
