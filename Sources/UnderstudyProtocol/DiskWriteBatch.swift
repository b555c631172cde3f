/// How one disk write travels.
public enum DiskWriteEncoding: UInt8, Sendable, CaseIterable {
    /// The written bytes as they are.
    case raw = 0
    /// An LZ4 block of the written bytes.
    case lz4 = 1
    /// The range reads as zeroes afterwards (WRITE_ZEROES, TRIM); no data follows.
    case zeroes = 2
}

/// A frame of guest disk writes of one epoch, in the order the guest issued them.
///
/// Payload: epoch u64, count u32, then per write: offset u64, length u32, encoding u8, and for
/// `raw` `length` bytes, for `lz4` a u32 encoded length and that many bytes.
public struct DiskWriteBatch: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var offset: UInt64
        public var length: Int
        public var encoding: DiskWriteEncoding
        public var data: Range<Int>
    }

    public static let maxEntries = 65536

    public let epoch: UInt64
    public let frame: Frame
    public let entries: [Entry]

    public init(frame: Frame) throws(ProtocolError) {
        var reader = frame.reader()
        epoch = try reader.readUInt64()
        let count = Int(try reader.readUInt32())
        guard count > 0, count <= DiskWriteBatch.maxEntries else {
            throw .malformed("disk-write batch announces \(count) writes (1...\(DiskWriteBatch.maxEntries) allowed)")
        }
        var entries: [Entry] = []
        entries.reserveCapacity(count)
        for position in 0..<count {
            let offset = try reader.readUInt64()
            let length = Int(try reader.readUInt32())
            guard length > 0, !offset.addingReportingOverflow(UInt64(length)).overflow else {
                throw .malformed("disk write \(position): length \(length) at offset \(offset) is not a valid range")
            }
            let rawEncoding = try reader.readUInt8()
            guard let encoding = DiskWriteEncoding(rawValue: rawEncoding) else {
                throw .malformed("disk write \(position): unknown encoding \(rawEncoding)")
            }
            // Data-carrying writes must fit a frame once decoded, so a forged length cannot make the
            // receiver allocate more than one frame's worth.
            guard encoding == .zeroes || length <= Frame.maxPayload else {
                throw .malformed("disk write \(position): \(length) data bytes exceed the \(Frame.maxPayload)-byte limit")
            }
            let data: Range<Int>
            switch encoding {
            case .raw: data = try reader.readRange(length)
            case .zeroes: data = reader.offset..<reader.offset
            case .lz4:
                let encoded = Int(try reader.readUInt32())
                guard encoded > 0, encoded < length else {
                    throw .malformed("disk write \(position): LZ4 length \(encoded) is not below the write length \(length)")
                }
                data = try reader.readRange(encoded)
            }
            entries.append(Entry(offset: offset, length: length, encoding: encoding, data: data))
        }
        try reader.expectEnd()
        self.frame = frame
        self.entries = entries
    }

    /// What entry `entry` leaves on the disk: its bytes (decompressed and length-checked), or a
    /// zeroed range, which is never materialised (a forged length must not become an allocation).
    public func data(of entry: Entry) throws(ProtocolError) -> DiskWriteData {
        switch entry.encoding {
        case .raw: return .bytes(Array(frame.bytes[entry.data]))
        case .zeroes: return .zeroes(length: entry.length)
        case .lz4:
            let output = UnsafeMutableRawBufferPointer.allocate(byteCount: entry.length, alignment: 16)
            defer { output.deallocate() }
            try LZ4Block.decompress(frame.bytes, range: entry.data, into: output, context: "disk write at offset \(entry.offset)")
            return .bytes(Array(output))
        }
    }

    /// Builds a batch, compressing each write when that makes it smaller. Each data write must be at
    /// most `Frame.maxPayload` bytes and the whole batch must fit in one frame.
    public static func frame(epoch: UInt64, writes: [(offset: UInt64, data: DiskWriteData)]) -> Frame {
        precondition(!writes.isEmpty && writes.count <= maxEntries)
        for (offset, data) in writes {
            let length = data.length
            precondition(length > 0 && length <= Int(UInt32.max) && !offset.addingReportingOverflow(UInt64(length)).overflow,
                         "disk write of \(length) bytes at \(offset) cannot be encoded")
            if case .bytes = data { precondition(length <= Frame.maxPayload, "split disk writes larger than \(Frame.maxPayload) bytes") }
        }
        return Frame(.diskWrites, capacity: 12 + writes.reduce(0) { $0 + 17 + $1.data.wireCapacity }) { writer in
            writer.write(epoch)
            writer.write(UInt32(writes.count))
            for (offset, data) in writes {
                writer.write(offset)
                switch data {
                case .zeroes(let length):
                    writer.write(UInt32(length))
                    writer.write(DiskWriteEncoding.zeroes.rawValue)
                case .bytes(let bytes):
                    writer.write(UInt32(bytes.count))
                    let compressed = bytes.withUnsafeBytes { source in
                        var out = [UInt8](repeating: 0, count: max(bytes.count - 1, 0))
                        let size = out.isEmpty ? 0 : out.withUnsafeMutableBytes { LZ4Block.compress(source, into: $0) }
                        return size > 0 ? Array(out[0..<size]) : nil
                    }
                    if let compressed {
                        writer.write(DiskWriteEncoding.lz4.rawValue)
                        writer.write(UInt32(compressed.count))
                        writer.write(bytes: compressed)
                    } else {
                        writer.write(DiskWriteEncoding.raw.rawValue)
                        writer.write(bytes: bytes)
                    }
                }
            }
        }
    }
}

/// What one guest disk write leaves on the disk.
public enum DiskWriteData: Sendable, Equatable {
    case bytes([UInt8])
    case zeroes(length: Int)

    /// Bytes of disk the write covers.
    public var length: Int {
        switch self {
        case .bytes(let bytes): bytes.count
        case .zeroes(let length): length
        }
    }

    var wireCapacity: Int {
        switch self {
        case .bytes(let bytes): bytes.count
        case .zeroes: 0
        }
    }
}

/// One change the guest made to its disk, in the order the disk server applied it.
public enum DiskChange: Sendable, Equatable {
    /// Bytes written, or a range zeroed (WRITE_ZEROES, TRIM).
    case write(offset: UInt64, data: DiskWriteData)
    /// Everything before this change was made durable (FLUSH, or a write with FUA).
    case flush
}
