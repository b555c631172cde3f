import Foundation
import Testing
@testable import UnderstudyHarness
import UnderstudySystem

@Suite("Loopback ports for tests' listeners")
struct LoopbackPortsTests {
    /// A random pick in 20000–50000 once met a port the kernel had just given an outgoing
    /// connection of another test (the backup's listen failed: "Address already in use").
    @Test func aRunOfPortsIsBelowTheEphemeralRangeAndFree() {
        let ephemeral = LoopbackPorts.ephemeralStart
        #expect(ephemeral > LoopbackPorts.lowest + 32, "this kernel's ephemeral range starts at \(ephemeral)")
        for _ in 0..<20 {
            let first = Int(LoopbackPorts.free(span: 8))
            #expect(first >= LoopbackPorts.lowest && first + 8 <= ephemeral, "\(first) ..< \(first + 8) below \(ephemeral)")
            #expect((first..<(first + 8)).allSatisfy { LoopbackPorts.isFree(UInt16($0)) })
        }
    }

    @Test func aPortWithAListenerIsNotFreeUntilItCloses() throws {
        let port = LoopbackPorts.free(span: 1)
        do {
            let listener = try TCPListener(endpoint: Endpoint(host: "127.0.0.1", port: port))
            withExtendedLifetime(listener) { #expect(!LoopbackPorts.isFree(port), "a port with a listener is taken") }
        }
        #expect(LoopbackPorts.isFree(port), "free again once the listener is gone")
    }

    /// The same generator state draws the same ports (the consistency trials are seeded).
    @Test func aSeededDrawRepeats() {
        struct Counter: RandomNumberGenerator {
            var state: UInt64
            mutating func next() -> UInt64 { state &+= 0x9E37_79B9_7F4A_7C15; return state }
        }
        var first = Counter(state: 7)
        var second = Counter(state: 7)
        #expect(LoopbackPorts.free(span: 4, using: &first) == LoopbackPorts.free(span: 4, using: &second))
    }
}
