import Testing
@testable import UnderstudyProtocol

@Suite("Page batch builder")
struct PageBatchBuilderTests {
    @Test("finish hands the batch's buffer to the frame without copying it")
    func finishDoesNotCopy() throws {
        let size = 4096
        var rng = SplitMix64(seed: 5)
        let encoder = PageEncoder(pageSize: size, capabilities: .supported)
        var builder = PageBatchBuilder(type: .pages, epoch: 3, capacity: 2 * encoder.maxEncodedSize)
        let pages = [PageFactory.random(size, &rng), PageFactory.text(size, &rng)]
        var lastSent = [UInt8](repeating: 0, count: size)
        for (index, page) in pages.enumerated() {
            page.withUnsafeBytes { page in
                lastSent.withUnsafeMutableBytes { _ = encoder.append(page: page, index: UInt64(index), lastSent: $0, to: &builder) }
            }
        }
        let buffer = builder.writer.bytes.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
        let frame = builder.finish()
        #expect(frame.bytes.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) } == buffer,
                "finish copied the batch")
        let batch = try PageBatch(frame: frame, pageSize: size, pageCount: 4)
        #expect(batch.epoch == 3)
        #expect(batch.entries.map(\.index) == [0, 1])
        #expect(batch.entries.map(\.encoding) == [.raw, .lz4])
    }
}
