import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import UnderstudyProtocol
import UnderstudyQEMU

/// What a synthetic guest writes into the pages it dirties.
public enum SyntheticContent: String, Sendable, CaseIterable, Codable {
    /// Text-like bytes: words from a small vocabulary (compresses about 3-4x).
    case text
    /// Random bytes (incompressible).
    case random
    /// A few bytes changed in a page that already holds data (the XOR-delta case).
    case sparseUpdate
    /// All zeroes.
    case zero
    /// Slices of real program binaries from the host.
    case binary
}

/// A guest stand-in for the foundation layer, tests and benchmarks: memory in an anonymous map,
/// and an exact record of which pages it wrote. Each capture first dirties `pagesPerCheckpoint`
/// pages with content drawn from `mix` (deterministic for a seed), then copies them out.
public final class SyntheticGuest: CheckpointSource, @unchecked Sendable {
    public let identity: VMIdentity
    public let memory: UnsafeRawBufferPointer
    public let pagesPerCheckpoint: Int
    public let mix: [SyntheticContent]
    private let storage: AnonymousMemory
    private let mutable: UnsafeMutableRawBufferPointer
    private let pageSize: Int
    private let state: Mutex<GuestState>
    private let pool: SyntheticContentPool

    struct GuestState {
        var rng: SplitMix64
        var dirty: Set<UInt64> = []
        var tracking = false
    }

    /// - Parameters:
    ///   - prefill: content for every page at start (nil: all zero), so the initial sync has work to do.
    public init(identity: VMIdentity, pagesPerCheckpoint: Int, mix: [SyntheticContent], seed: UInt64 = 1,
                prefill: SyntheticContent? = .text) {
        precondition(!mix.isEmpty && pagesPerCheckpoint >= 0)
        self.identity = identity
        pageSize = Int(identity.pageSize)
        self.pagesPerCheckpoint = min(pagesPerCheckpoint, Int(identity.pageCount))
        self.mix = mix
        storage = AnonymousMemory(size: Int(identity.memorySize), purpose: "the synthetic guest")
        mutable = storage.bytes
        memory = UnsafeRawBufferPointer(mutable)
        var rng = SplitMix64(seed: seed)
        pool = SyntheticContentPool(pageSize: pageSize, rng: &rng)
        if let prefill {
            for index in 0..<Int(identity.pageCount) {
                let page = UnsafeMutableRawBufferPointer(rebasing: mutable[(index * pageSize)..<((index + 1) * pageSize)])
                pool.fill(page, with: prefill, rng: &rng)
            }
        }
        state = Mutex(GuestState(rng: rng))
    }


    public func startTracking() throws {
        state.withLock { $0.tracking = true; $0.dirty.removeAll() }
    }

    public func collectDirtyPages() throws -> [UInt64] {
        state.withLock { guest in
            defer { guest.dirty.removeAll(keepingCapacity: true) }
            return guest.dirty.sorted()
        }
    }

    /// Dirties a new set of pages (the guest "ran"), then captures everything dirty. The synthetic
    /// guest only runs inside `capture`, so `resume` changes nothing.
    public func capture(epoch: UInt64, resume: Bool) throws -> CapturedCheckpoint {
        state.withLock { guest in
            runEpoch(&guest)
            let start = ContinuousClock.now
            let indices = guest.dirty.sorted()
            guest.dirty.removeAll(keepingCapacity: true)
            let captured = CapturedCheckpoint(copying: indices, from: memory, pageSize: pageSize)
            var device = WireWriter(capacity: 64)
            device.write(bytes: Array("synthetic device state".utf8))
            device.write(UInt64(indices.count))
            captured.deviceState = device.bytes
            captured.pause = ContinuousClock.now - start
            return captured
        }
    }

    /// Writes `pages` pages now (outside any capture), as a running guest would between collections.
    public func write(pages count: Int) {
        state.withLock { guest in
            for _ in 0..<count { dirtyOne(&guest) }
        }
    }

    private func runEpoch(_ guest: inout GuestState) {
        for _ in 0..<pagesPerCheckpoint { dirtyOne(&guest) }
    }

    private func dirtyOne(_ guest: inout GuestState) {
        let index = Int(guest.rng.next() % identity.pageCount)
        let content = mix[Int(guest.rng.next() % UInt64(mix.count))]
        pool.fill(page(index), with: content, rng: &guest.rng)
        if guest.tracking { guest.dirty.insert(UInt64(index)) }
    }

    private func page(_ index: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: mutable[(index * pageSize)..<((index + 1) * pageSize)])
    }
}

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

/// A small, fast, seedable generator (SplitMix64), so synthetic runs are reproducible.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
