import Foundation

/// Pre-generated page contents, so that dirtying a page costs a copy, not content generation,
/// and benchmarks measure replication rather than the synthetic guest.
struct SyntheticContentPool: Sendable {
    static let poolPages = 512
    let pageSize: Int
    let text: [UInt8]
    let random: [UInt8]
    let binary: [UInt8]

    init(pageSize: Int, rng: inout SplitMix64) {
        self.pageSize = pageSize
        let size = SyntheticContentPool.poolPages * pageSize
        var random = [UInt8](repeating: 0, count: size)
        for i in stride(from: 0, to: size, by: 8) { withUnsafeBytes(of: rng.next()) { random.replaceSubrange(i..<(i + 8), with: $0) } }
        var text: [UInt8] = []
        text.reserveCapacity(size + 32)
        let words = SyntheticContentPool.vocabulary
        while text.count < size { text.append(contentsOf: words[Int(rng.next() % UInt64(words.count))]) }
        self.random = random
        self.text = Array(text.prefix(size))
        let corpus = SyntheticContentPool.loadBinaryCorpus()
        binary = corpus.count >= pageSize ? corpus : self.text
    }

    func fill(_ page: UnsafeMutableRawBufferPointer, with content: SyntheticContent, rng: inout SplitMix64) {
        switch content {
        case .zero: page.initializeMemory(as: UInt8.self, repeating: 0)
        case .random: copy(from: random, into: page, rng: &rng)
        case .text: copy(from: text, into: page, rng: &rng)
        case .binary: copy(from: binary, into: page, rng: &rng)
        case .sparseUpdate:
            for _ in 0..<4 {
                let offset = Int(rng.next() % UInt64(page.count / 8)) * 8
                page.storeBytes(of: rng.next(), toByteOffset: offset, as: UInt64.self)
            }
        }
    }

    private func copy(from source: [UInt8], into page: UnsafeMutableRawBufferPointer, rng: inout SplitMix64) {
        let start = Int(rng.next() % UInt64(source.count / pageSize)) * pageSize
        source.withUnsafeBytes { page.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[start..<(start + pageSize)])) }
    }

    private static let vocabulary: [[UInt8]] = [
        "the ", "checkpoint ", "backup ", "primary ", "memory ", "page ", "epoch ", "guest ", "kernel ", "of ", "and ",
        "network ", "packet ", "disk ", "write ", "acknowledged ", "\n", "error: ", "0x7f3a", "user=", "id=", "status=ok ",
    ].map { Array($0.utf8) }

    /// Up to 32 MiB of host binaries (the same ones on every run on one machine).
    static func loadBinaryCorpus() -> [UInt8] {
        var corpus: [UInt8] = []
        for path in ["/usr/bin/qemu-system-x86_64", "/usr/lib/x86_64-linux-gnu/libcrypto.so.3", "/bin/bash", "/usr/bin/ls"] {
            guard corpus.count < 32 << 20, let data = FileManager.default.contents(atPath: path) else { continue }
            corpus.append(contentsOf: data.prefix((32 << 20) - corpus.count))
        }
        return corpus
    }
}
