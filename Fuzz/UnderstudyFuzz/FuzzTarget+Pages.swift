import UnderstudyProtocol

extension FuzzTarget {
    /// A page batch's payload: parsed against the VM's geometry, then every entry decoded (LZ4, XOR deltas).
    static let pages = FuzzTarget(name: "pages", run: { bytes in
        guard bytes.count <= Frame.maxPayload else { return }
        let frame = Frame(.pages, capacity: bytes.count) { $0.write(bytes: bytes) }
        let identity = ProtocolSamples.identity
        guard let batch = try? PageBatch(frame: frame, pageSize: Int(identity.pageSize), pageCount: identity.pageCount) else { return }
        PageDecoding().decodeAll(batch)
    }, seeds: {
        [ProtocolSamples.pageBatch.bytes.dropFirst(Frame.headerSize).map { $0 }]
    })
}
