import UnderstudyProtocol

extension FuzzTarget {
    /// The replication stream as the backup reads it: frames split from a byte stream, each decoded
    /// into a message against a small VM, page batches decoded page by page, disk writes decompressed.
    static let frames = FuzzTarget(name: "frames", run: { bytes in
        var decoder = FrameStreamDecoder()
        decoder.append(bytes)
        let pages = PageDecoding()
        while let frame = try? decoder.next() {
            guard let message = try? Message(frame: frame, identity: ProtocolSamples.identity) else { continue }
            switch message {
            case .pages(let batch), .syncPages(let batch): pages.decodeAll(batch)
            case .diskWrites(let batch): batch.entries.forEach { _ = try? batch.change(at: $0) }
            default: break
            }
        }
    }, seeds: {
        let session = ProtocolSamples.messages.map(\.frame)
        return [session.flatMap(\.bytes), ProtocolSamples.pageBatch.bytes, ProtocolSamples.diskWriteBatch.bytes]
    })
}
