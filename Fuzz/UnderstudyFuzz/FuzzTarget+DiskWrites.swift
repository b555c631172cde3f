import UnderstudyProtocol

extension FuzzTarget {
    /// A disk-write batch's payload: parsed, then every write decompressed and length-checked.
    static let diskWrites = FuzzTarget(name: "disk-writes", run: { bytes in
        guard bytes.count <= Frame.maxPayload else { return }
        let frame = Frame(.diskWrites, capacity: bytes.count) { $0.write(bytes: bytes) }
        guard let batch = try? DiskWriteBatch(frame: frame) else { return }
        for entry in batch.entries {
            guard let change = try? batch.change(at: entry) else { continue }
            // A decoded write is exactly as long as its entry says: the replica writes that many bytes.
            if case .write(_, .bytes(let data)) = change { precondition(data.count == entry.length, "decoded \(data.count) of \(entry.length) bytes") }
        }
    }, seeds: {
        [ProtocolSamples.diskWriteBatch.bytes.dropFirst(Frame.headerSize).map { $0 }]
    })
}
