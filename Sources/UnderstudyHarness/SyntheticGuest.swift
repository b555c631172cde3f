import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import UnderstudyProtocol
import UnderstudyQEMU

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
