import Foundation
import Synchronization
import Testing
import UnderstudyHarness
import UnderstudySystem
import UnderstudyTransport
#if canImport(Glibc)
import Glibc
#endif

@Suite("heartbeat datagrams: authenticated, from the peer, never replayed")
struct HeartbeatDatagramTests {
    static let key = [UInt8](repeating: 7, count: HeartbeatDatagram.keyLength)
    static let otherKey = [UInt8](repeating: 9, count: HeartbeatDatagram.keyLength)

    static func datagram(_ sequence: UInt64, key: [UInt8] = key, vm: String = "web-1", sender: String = "primary") -> [UInt8] {
        HeartbeatDatagram(vm: vm, sender: sender, sequence: sequence).encoded(key: key)
    }

    static func verifier(key: [UInt8]? = key) -> HeartbeatDatagramVerifier {
        var verifier = HeartbeatDatagramVerifier(vm: "web-1", peerName: "primary")
        if let key { verifier.use(key: key) }
        return verifier
    }

    @Test("a datagram made under the session's key, from the peer, counts; sequences only grow")
    func accepted() {
        var verifier = Self.verifier()
        #expect(verifier.received(Self.datagram(1), fromPeer: true) == .success(HeartbeatDatagram(vm: "web-1", sender: "primary", sequence: 1)))
        #expect(verifier.received(Self.datagram(5), fromPeer: true) == .success(HeartbeatDatagram(vm: "web-1", sender: "primary", sequence: 5)))
        #expect(verifier.received(Self.datagram(5), fromPeer: true) == .failure(.replayed(sequence: 5, last: 5)), "a captured datagram sent again")
        #expect(verifier.received(Self.datagram(3), fromPeer: true) == .failure(.replayed(sequence: 3, last: 5)))
    }

    @Test("forged, of another session, unauthenticated, from elsewhere or before any session: nothing counts")
    func rejected() {
        var keyless = Self.verifier(key: nil)
        #expect(keyless.received(Self.datagram(1), fromPeer: true) == .failure(.noKey))
        var verifier = Self.verifier()
        #expect(verifier.received(Self.datagram(1), fromPeer: false) == .failure(.wrongSource))
        #expect(verifier.received(Self.datagram(1, key: Self.otherKey), fromPeer: true) == .failure(.invalid(.badAuthentication)))
        #expect(verifier.received(Array("USHB1 web-1 primary 1".utf8), fromPeer: true) == .failure(.invalid(.malformed)),
                "the old unauthenticated form")
        var tampered = Self.datagram(1)
        tampered[tampered.count - 1] = tampered.last == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
        #expect(verifier.received(tampered, fromPeer: true) == .failure(.invalid(.badAuthentication)))
        // The sequence is authenticated too: raising it breaks the MAC.
        let forgedSequence = Array(String(decoding: Self.datagram(1), as: UTF8.self).replacingOccurrences(of: " 1 ", with: " 9 ").utf8)
        #expect(verifier.received(forgedSequence, fromPeer: true) == .failure(.invalid(.badAuthentication)))
        #expect(verifier.received(Self.datagram(1, vm: "web-2"), fromPeer: true) == .failure(.invalid(.notOurPeer)))
        #expect(verifier.received(Self.datagram(1, sender: "mallory"), fromPeer: true) == .failure(.invalid(.notOurPeer)))
        #expect(verifier.received([UInt8](repeating: 0xff, count: 40), fromPeer: true) == .failure(.invalid(.malformed)))
        #expect(verifier.received(Array(repeating: UInt8(ascii: "a"), count: 600), fromPeer: true) == .failure(.invalid(.malformed)))
    }

    @Test("a new session's key restarts the sequence and retires the old key")
    func newKey() {
        var verifier = Self.verifier()
        #expect(verifier.received(Self.datagram(100), fromPeer: true) == .success(HeartbeatDatagram(vm: "web-1", sender: "primary", sequence: 100)))
        verifier.use(key: Self.otherKey)
        #expect(verifier.received(Self.datagram(101), fromPeer: true) == .failure(.invalid(.badAuthentication)))
        #expect(verifier.received(Self.datagram(1, key: Self.otherKey), fromPeer: true)
            == .success(HeartbeatDatagram(vm: "web-1", sender: "primary", sequence: 1)))
    }

    @Test("over UDP: the peer's datagrams are heard once both hold the key; a forger's are not")
    func overUDP() throws {
        let heardByBackup = Atomic<Int>(0)
        let backupPort = try Self.freeUDPPort()
        let primaryPort = try Self.freeUDPPort()
        let backup = try HeartbeatDatagrams(listen: Endpoint(host: "127.0.0.1", port: backupPort),
                                            peerAddress: Endpoint(host: "127.0.0.1", port: primaryPort), vm: "web-1", node: "backup",
                                            peerName: "primary") { heardByBackup.add(1, ordering: .sequentiallyConsistent) }
        defer { backup.close() }
        let primary = try HeartbeatDatagrams(listen: Endpoint(host: "127.0.0.1", port: primaryPort),
                                             peerAddress: Endpoint(host: "127.0.0.1", port: backupPort), vm: "web-1", node: "primary",
                                             peerName: "backup") {}
        defer { primary.close() }

        primary.send()
        Thread.sleep(forTimeInterval: 0.1)
        #expect(heardByBackup.load(ordering: .sequentiallyConsistent) == 0, "no session yet: nothing is sent, nothing counts")

        // A forger on another port, with a well-formed datagram made under a key it guessed.
        let forger = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(forger) }
        backup.use(key: Self.key)
        primary.use(key: Self.key)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = backupPort.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        for bytes in [Self.datagram(1, key: Self.otherKey), Array("USHB1 web-1 primary 1".utf8), Self.datagram(2)] {
            _ = bytes.withUnsafeBytes { payload in
                withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(forger, payload.baseAddress, payload.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                }
            }
        }
        #expect(eventually { backup.rejectedCount == 3 }, "forged, old-form and right-key-wrong-source datagrams are all refused")
        #expect(heardByBackup.load(ordering: .sequentiallyConsistent) == 0)

        primary.send()
        primary.send()
        #expect(eventually { heardByBackup.load(ordering: .sequentiallyConsistent) == 2 })
    }

    /// A UDP port nobody is bound to right now on loopback.
    static func freeUDPPort() throws -> UInt16 {
        let probe = try HeartbeatDatagrams(listen: Endpoint(host: "127.0.0.1", port: 0), peerAddress: Endpoint(host: "127.0.0.1", port: 9),
                                           vm: "probe", node: "probe", peerName: "probe") {}
        defer { probe.close() }
        return probe.listen.port
    }
}
