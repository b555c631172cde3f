
/// A frame of guest disk writes of one epoch, in the order the guest issued them.
///
/// Payload: epoch u64, count u32, then per change: offset u64, length u32, encoding u8, and for
/// `raw` `length` bytes, for `lz4` a u32 encoded length and that many bytes. Changes are applied
/// in order; a batch of the initial sync carries epoch 0. The data writes of one batch decode to
/// at most `Frame.maxPayload` bytes, so a small frame of well-compressed writes cannot make the
/// receiver allocate more than one frame's worth.
public struct DiskWriteBatch: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var offset: UInt64
        public var length: Int
        public var encoding: DiskWriteEncoding
        public var data: Range<Int>
    }

    public static let maxEntries = 65536
    /// Payload bytes before the first entry: epoch and count.
    public static let headerSize = 12
    /// Data bytes a write carries at most in one entry; `frames` splits longer writes.
    public static let maxEntryBytes = 1 << 20

    public let epoch: UInt64
    public let frame: Frame
    public let entries: [Entry]
    /// Data bytes the batch's writes decode to (zeroed ranges carry none).
    public let dataBytes: UInt64

    public init(frame: Frame) throws(ProtocolError) {
        var reader = frame.reader()
        epoch = try reader.readUInt64()
        let count = Int(try reader.readUInt32())
        guard count > 0, count <= DiskWriteBatch.maxEntries else {
            throw .malformed("disk-write batch announces \(count) writes (1...\(DiskWriteBatch.maxEntries) allowed)")
        }
        var entries: [Entry] = []
        entries.reserveCapacity(count)
        var dataBytes = 0
        for position in 0..<count {
            let offset = try reader.readUInt64()
            let length = Int(try reader.readUInt32())
            let rawEncoding = try reader.readUInt8()
            guard let encoding = DiskWriteEncoding(rawValue: rawEncoding) else {
                throw .malformed("disk write \(position): unknown encoding \(rawEncoding)")
            }
            if encoding == .flush {
                guard offset == 0, length == 0 else {
                    throw .malformed("disk write \(position): a flush carries offset \(offset) and length \(length), expected 0 and 0")
                }
                entries.append(Entry(offset: 0, length: 0, encoding: .flush, data: reader.offset..<reader.offset))
                continue
            }
            guard length > 0, !offset.addingReportingOverflow(UInt64(length)).overflow else {
                throw .malformed("disk write \(position): length \(length) at offset \(offset) is not a valid range")
            }
            // The data writes of a batch must fit a frame once decoded, so forged lengths cannot
            // make the receiver allocate more than one frame's worth. Checked before anything is
            // decoded: LZ4 expands up to 255 times, so a limit per write alone would let one 4 MiB
            // frame decode to about 1 GiB.
            if encoding != .zeroes {
                guard length <= Frame.maxPayload - dataBytes else {
                    throw .malformed("disk write \(position): \(length) data bytes take the batch past the \(Frame.maxPayload)-byte limit")
                }
                dataBytes += length
            }
            let data: Range<Int>
            switch encoding {
            case .raw: data = try reader.readRange(length)
            case .zeroes, .flush: data = reader.offset..<reader.offset
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
        self.dataBytes = UInt64(dataBytes)
    }

    /// What entry `entry` does to the disk: its bytes (decompressed and length-checked), a zeroed
    /// range, which is never materialised (a forged length must not become an allocation), or a flush.
    public func change(at entry: Entry) throws(ProtocolError) -> DiskChange {
        switch entry.encoding {
        case .raw: return .write(offset: entry.offset, data: .bytes(Array(frame.bytes[entry.data])))
        case .zeroes: return .write(offset: entry.offset, data: .zeroes(length: entry.length))
        case .flush: return .flush
        case .lz4:
            let output = UnsafeMutableRawBufferPointer.allocate(byteCount: entry.length, alignment: 16)
            defer { output.deallocate() }
            try LZ4Block.decompress(frame.bytes, range: entry.data, into: output, context: "disk write at offset \(entry.offset)")
            return .write(offset: entry.offset, data: .bytes(Array(output)))
        }
    }

    /// Builds one batch, compressing each write when that makes it smaller. Each data write must be
    /// at most `Frame.maxPayload` bytes and the whole batch must fit in one frame; `frames` packs
    /// any list of changes within those limits. `compression` picks liblz4's compressor; the
    /// receiver decodes either.
    public static func frame(epoch: UInt64, changes: [DiskChange], compression: CompressionMode = .fast) -> Frame {
        precondition(!changes.isEmpty && changes.count <= maxEntries)
        for case .write(let offset, let data) in changes {
            let length = data.length
            precondition(length > 0 && length <= Int(UInt32.max) && !offset.addingReportingOverflow(UInt64(length)).overflow,
                         "disk write of \(length) bytes at \(offset) cannot be encoded")
        }
        precondition(changes.reduce(0) { $0 + $1.wireCapacity } <= Frame.maxPayload,
                     "a batch carries at most \(Frame.maxPayload) data bytes: split the writes with `frames`")
        return Frame(.diskWrites, capacity: headerSize + changes.reduce(0) { $0 + 17 + $1.wireCapacity }) { writer in
            writer.write(epoch)
            writer.write(UInt32(changes.count))
            for change in changes {
                switch change {
                case .flush:
                    writer.write(UInt64(0))
                    writer.write(UInt32(0))
                    writer.write(DiskWriteEncoding.flush.rawValue)
                case .write(let offset, .zeroes(let length)):
                    writer.write(offset)
                    writer.write(UInt32(length))
                    writer.write(DiskWriteEncoding.zeroes.rawValue)
                case .write(let offset, .bytes(let bytes)):
                    writer.write(offset)
                    writer.write(UInt32(bytes.count))
                    let compressed = bytes.withUnsafeBytes { source in
                        var out = [UInt8](repeating: 0, count: max(bytes.count - 1, 0))
                        let size = out.isEmpty ? 0 : out.withUnsafeMutableBytes { LZ4Block.compress(source, into: $0, mode: compression) }
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

    /// Packs changes of any size into batches: writes longer than `maxEntryBytes` are cut into
    /// pieces (applied in order, they leave the same disk), and a batch is closed once it holds
    /// about `maxEntryBytes` of data, so every frame stays far below the frame limit. Returns the
    /// frames and how many entries they hold in all (what the epoch's summary counts).
    public static func frames(epoch: UInt64, changes: [DiskChange], compression: CompressionMode = .fast)
        -> (frames: [Frame], entries: Int) {
        var frames: [Frame] = []
        var entries = 0
        var batch: [DiskChange] = []
        var batchBytes = 0
        func add(_ change: DiskChange) {
            if batch.count == maxEntries || batchBytes + change.wireCapacity > maxEntryBytes, !batch.isEmpty {
                frames.append(frame(epoch: epoch, changes: batch, compression: compression))
                batch.removeAll(keepingCapacity: true)
                batchBytes = 0
            }
            batch.append(change)
            batchBytes += change.wireCapacity
            entries += 1
        }
        for change in changes {
            switch change {
            case .write(let offset, .bytes(let bytes)) where bytes.count > maxEntryBytes:
                for start in stride(from: 0, to: bytes.count, by: maxEntryBytes) {
                    let piece = Array(bytes[start..<min(start + maxEntryBytes, bytes.count)])
                    add(.write(offset: offset + UInt64(start), data: .bytes(piece)))
                }
            case .write(let offset, .zeroes(let length)) where length > Int(UInt32.max):
                for start in stride(from: 0, to: length, by: Int(UInt32.max)) {
                    add(.write(offset: offset + UInt64(start), data: .zeroes(length: min(Int(UInt32.max), length - start))))
                }
            default:
                add(change)
            }
        }
        if !batch.isEmpty { frames.append(frame(epoch: epoch, changes: batch, compression: compression)) }
        return (frames, entries)
    }
}
