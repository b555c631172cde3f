import PropertyBased
import Testing
@testable import UnderstudyProtocol

@Suite("Device state codec")
struct DeviceStateCodecTests {
    static let limit = Int(StagingLimits().deviceStateBytes)

    /// What happens to the device state between two checkpoints.
    enum Step: CaseIterable, Sendable {
        /// A few bytes change (timers, counters): the usual case.
        case fewBytesChanged
        /// Nothing changed.
        case unchanged
        /// New, incompressible content of the same size.
        case rewritten
        /// The size changes (hot-plug, a vCPU more or less).
        case resized
        /// The session ends; the next one starts with a catch-up (the backup keeps its state) or a
        /// full sync (the backup holds none).
        case newSession
    }

    /// A QEMU-like state: compressible structure with incompressible parts.
    static func state(_ rng: inout SplitMix64, size: Int) -> [UInt8] {
        var state = [UInt8](repeating: 0, count: size)
        var i = 0
        while i < size {
            let run = min(size - i, rng.int(in: 1...64))
            if rng.bool(0.4) { for j in 0..<run { state[i + j] = rng.byte() } }
            i += run
        }
        return state
    }

    /// The size of LZ4(`bytes`) when smaller than `bytes`, else nil.
    static func compressed(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 2 else { return nil }
        var out = [UInt8](repeating: 0, count: bytes.count - 1)
        let size = bytes.withUnsafeBytes { source in out.withUnsafeMutableBytes { LZ4Block.compress(source, into: $0) } }
        return size > 0 ? size : nil
    }

    /// Primary and backup through any sequence of steps: the backup decodes exactly the
    /// primary's states, each encoded as the smallest allowed form.
    static func run(seed: UInt64, steps: [Step]) throws {
        var rng = SplitMix64(seed: seed)
        var size = rng.int(in: 0...20_000)
        var current = state(&rng, size: size)
        var previous: [UInt8]? = nil
        var committed: [UInt8] = []
        for step in [Step.unchanged] + steps {
            switch step {
            case .fewBytesChanged:
                for _ in 0..<rng.int(in: 1...40) where !current.isEmpty { current[rng.int(in: 0..<current.count)] = rng.byte() }
            case .unchanged: break
            case .rewritten: current = rng.bytes(size)
            case .resized:
                size = max(0, size + rng.int(in: -4096...4096))
                current = state(&rng, size: size)
            case .newSession:
                previous = nil
                if rng.bool() { committed = [] }
            }
            let encoded = DeviceStateCodec.encode(current, previous: previous)
            let decoded = try DeviceStateCodec.decode(encoded, previous: committed, maxLength: limit)
            #expect(decoded == current, "seed \(seed): the backup's state differs from the primary's after \(step)")
            let delta = previous.flatMap { previous in
                previous.count == current.count ? compressed(zip(current, previous).map { $0 ^ $1 }) : nil
            }
            let smallest = [current.count, compressed(current), delta].compactMap { $0 }.min()!
            #expect(encoded.count == DeviceStateCodec.headerSize + smallest,
                    "seed \(seed): \(encoded.count - DeviceStateCodec.headerSize) bytes sent, the smallest form has \(smallest)")
            if encoded[0] == PageEncoding.lz4Delta.rawValue {
                #expect(previous?.count == current.count, "seed \(seed): a delta without a base of the same size")
            }
            previous = current
            committed = decoded
        }
    }

    @Test("any sequence of states decodes on the backup to exactly the primary's states")
    func property() async throws {
        await propertyCheck(count: 40, input: Gen.uint64(), Gen<Step>.case.array(of: 1...30)) { seed, steps in
            try Self.run(seed: seed, steps: steps)
        }
    }

    @Test("random states round-trip, whole and as deltas")
    func randomRoundTrips() throws {
        var rng = SplitMix64(seed: TestSeed.make("device-state round trips"))
        for _ in 0..<50 {
            let size = rng.int(in: 0...40_000)
            let previous = rng.bool() ? Self.state(&rng, size: size) : rng.bytes(size)
            var current = previous
            for _ in 0..<rng.int(in: 0...200) where size > 0 { current[rng.int(in: 0..<size)] = rng.byte() }
            for base in [previous, nil] {
                let encoded = DeviceStateCodec.encode(current, previous: base)
                #expect(try DeviceStateCodec.decode(encoded, previous: previous, maxLength: Self.limit) == current)
                if base == nil { #expect(encoded[0] != PageEncoding.lz4Delta.rawValue, "no base, no delta") }
            }
        }
    }

    /// The measured case of the issue: 14,662 bytes of which 40 changed. Incompressible content
    /// here, so that only the delta can be small.
    @Test("an idle guest's state costs a few hundred bytes as a delta")
    func idleGuest() throws {
        var rng = SplitMix64(seed: 0x1D1E)
        let previous = rng.bytes(14_662)
        var current = previous
        for _ in 0..<40 { current[rng.int(in: 0..<current.count)] ^= 0x5A }
        let encoded = DeviceStateCodec.encode(current, previous: previous)
        #expect(encoded[0] == PageEncoding.lz4Delta.rawValue)
        #expect(encoded.count < 400, "\(encoded.count) bytes")
        #expect(try DeviceStateCodec.decode(encoded, previous: previous, maxLength: Self.limit) == current)
        let whole = DeviceStateCodec.encode(current, previous: nil)
        #expect(whole[0] == PageEncoding.raw.rawValue && whole.count == DeviceStateCodec.headerSize + current.count)
    }

    @Test("a size change goes whole and decodes against a base of the old size")
    func sizeChange() throws {
        var rng = SplitMix64(seed: 0x512E)
        let previous = Self.state(&rng, size: 14_662)
        let grown = previous + Self.state(&rng, size: 1_024)
        let encoded = DeviceStateCodec.encode(grown, previous: previous)
        #expect(encoded[0] != PageEncoding.lz4Delta.rawValue)
        #expect(try DeviceStateCodec.decode(encoded, previous: previous, maxLength: Self.limit) == grown)
        let shrunk = Array(grown.prefix(10_000))
        #expect(try DeviceStateCodec.decode(DeviceStateCodec.encode(shrunk, previous: grown), previous: grown,
                                            maxLength: Self.limit) == shrunk)
    }

    @Test("malformed encodings are refused")
    func malformed() throws {
        var rng = SplitMix64(seed: 0xBAD)
        let previous = rng.bytes(4096)
        var current = previous
        current[17] ^= 1
        let delta = DeviceStateCodec.encode(current, previous: previous)
        #expect(delta[0] == PageEncoding.lz4Delta.rawValue)
        // A delta against a base the backup does not hold (it lost the previous state: the
        // primary must send whole after a reconnect).
        #expect(throws: ProtocolError.self) { try DeviceStateCodec.decode(delta, previous: [], maxLength: Self.limit) }
        #expect(throws: ProtocolError.self) { try DeviceStateCodec.decode(delta, previous: Array(previous.prefix(4095)), maxLength: Self.limit) }
        #expect(throws: ProtocolError.self) { try DeviceStateCodec.decode(delta, previous: previous, maxLength: 4095) }
        var unknown = delta
        unknown[0] = 9
        #expect(throws: ProtocolError.self) { try DeviceStateCodec.decode(unknown, previous: previous, maxLength: Self.limit) }
        var zero = delta
        zero[0] = PageEncoding.zero.rawValue
        #expect(throws: ProtocolError.self) { try DeviceStateCodec.decode(zero, previous: previous, maxLength: Self.limit) }
        #expect(throws: ProtocolError.self) { try DeviceStateCodec.decode(Array(delta.dropLast()), previous: previous, maxLength: Self.limit) }
        #expect(throws: ProtocolError.self) { try DeviceStateCodec.decode([2, 0, 0], previous: previous, maxLength: Self.limit) }
        let raw = DeviceStateCodec.encode(previous, previous: nil)
        #expect(throws: ProtocolError.self) { try DeviceStateCodec.decode(raw + [0], previous: [], maxLength: Self.limit) }
    }
}
