import Foundation
import Logging
import Synchronization
import Testing
import UnderstudyHarness
import UnderstudySystem
import UnderstudyTransport
import UnderstudyWitness
#if canImport(Glibc)
import Glibc
#endif

private let logger = Logger(label: "witness-test")

private func uniqueVM() -> String { "vm-" + UUID().uuidString.prefix(8).lowercased() }

private func endpoint(_ port: UInt16) -> Endpoint { Endpoint(host: "127.0.0.1", port: port) }

private func term(_ number: UInt64, _ holder: String) -> WitnessTerm { WitnessTerm(number: number, holder: holder) }

/// 1 s leases (the test etcd grants them) and short requests keep these tests quick.
private func configuration(_ port: UInt16, tls: TLSConfiguration?) -> WitnessConfiguration {
    WitnessConfiguration(endpoints: [endpoint(port)], tls: tls, leaseTTL: .seconds(1), requestTimeout: .milliseconds(200))
}

/// A witness as production runs it: etcd serving TLS and requiring client certificates of the
/// CA that issued its own ("witness") and its clients' ("node-a", "node-b").
private final class TLSWitness {
    let certificates: TemporaryDirectory
    let etcd: EtcdProcess

    init() throws {
        certificates = try TemporaryDirectory("witness-ca")
        do {
            try CertificateAuthority.initialize(directory: "\(certificates.path)/certs", nodes: [EtcdProcess.serverName, "node-a", "node-b"])
            etcd = try EtcdProcess(certificates: "\(certificates.path)/certs")
        } catch {
            certificates.remove()
            throw error
        }
    }

    var clientPort: UInt16 { etcd.clientPort }
    /// A client's TLS: node-a's certificate (etcd takes any of its CA's).
    var tls: TLSConfiguration? { etcd.clientTLS(node: "node-a") }
    func pause() { etcd.pause() }
    func resume() { etcd.resume() }

    func stop() {
        etcd.stop()
        certificates.remove()
    }
}

/// Collects what `onLost` reported.
private final class LostReports: Sendable {
    private let reasons = Mutex<[String]>([])
    var all: [String] { reasons.withLock { $0 } }
    var callback: @Sendable (String) -> Void { { reason in self.reasons.withLock { $0.append(reason) } } }
}

private func sleep(_ duration: Duration) {
    Thread.sleep(forTimeInterval: duration.seconds)
}

@Suite(.enabled(if: EtcdProcess.isInstalled, "needs /usr/bin/etcd (Debian's etcd-server)"))
struct EtcdWitnessTests {
    @Test func grantClaimGetAndReleaseRoundTrip() throws {
        let etcd = try TLSWitness()
        defer { etcd.stop() }
        let client = EtcdClient(endpoints: [endpoint(etcd.clientPort)], timeout: .seconds(1), tls: etcd.tls)
        let vm = uniqueVM()
        let key = WitnessConfiguration.key(forVM: vm)
        let termKey = WitnessConfiguration.termKey(forVM: vm)

        let lease = try client.grantLease(ttl: .milliseconds(1200))
        #expect(lease.ttl == .seconds(2), "asked 1.2 s: etcd grants whole seconds, rounded up")
        #expect(try client.get(key) == nil)
        #expect(try client.claim(key, value: "node-a", lease: lease.id, termKey: termKey, expecting: nil, next: term(1, "node-a")) == .acquired)
        let stored = try #require(try client.get(key))
        #expect(stored.value == "node-a")
        #expect(stored.lease == lease.id)
        let storedTerm = try #require(try client.get(termKey))
        #expect(storedTerm.value == "1 node-a")
        #expect(storedTerm.lease == 0, "the term outlives every lease")
        #expect(try client.keepAlive(lease: lease.id) == .seconds(2))

        // This node's own claim moves to a new lease, in the next term.
        let second = try client.grantLease(ttl: .seconds(1))
        #expect(second.ttl == .seconds(1))
        #expect(try client.claim(key, value: "node-a", lease: second.id, termKey: termKey, expecting: nil, next: term(1, "node-a"))
                == .termIs(term(1, "node-a")), "a claim expecting another term writes nothing")
        #expect(try client.get(key)?.lease == lease.id)
        #expect(try client.claim(key, value: "node-a", lease: second.id, termKey: termKey, expecting: term(1, "node-a"), next: term(2, "node-a"))
                == .acquired)
        #expect(try client.get(key)?.lease == second.id)
        #expect(try client.get(termKey)?.value == "2 node-a")

        try client.release(key, ifValue: "node-b")
        #expect(try client.get(key)?.value == "node-a", "release deletes only the caller's own claim")
        try client.release(key, ifValue: "node-a")
        #expect(try client.get(key) == nil)

        try client.revoke(lease: lease.id)
        #expect(try client.keepAlive(lease: lease.id) == .zero, "a revoked lease renews to nothing")
        try client.revoke(lease: lease.id)
    }

    @Test func revokingALeaseDeletesTheClaimWithIt() throws {
        let etcd = try TLSWitness()
        defer { etcd.stop() }
        let client = EtcdClient(endpoints: [endpoint(etcd.clientPort)], timeout: .seconds(1), tls: etcd.tls)
        let vm = uniqueVM()
        let key = WitnessConfiguration.key(forVM: vm)
        let termKey = WitnessConfiguration.termKey(forVM: vm)
        let lease = try client.grantLease(ttl: .seconds(5))
        #expect(try client.claim(key, value: "node-a", lease: lease.id, termKey: termKey, expecting: nil, next: term(1, "node-a")) == .acquired)
        let other = try client.grantLease(ttl: .seconds(5))
        #expect(try client.claim(key, value: "node-b", lease: other.id, termKey: termKey, expecting: term(1, "node-a"), next: term(2, "node-b"))
                == .heldBy("node-a"), "a holder refuses whatever the term")
        try client.revoke(lease: lease.id)
        #expect(try client.get(key) == nil)
        #expect(try client.get(termKey)?.value == "1 node-a", "the term stays when the claim goes")
        #expect(try client.claim(key, value: "node-b", lease: other.id, termKey: termKey, expecting: term(1, "node-a"), next: term(2, "node-b"))
                == .acquired)
    }

    @Test func aSecondNodeIsRefusedWithTheHoldersName() throws {
        let etcd = try TLSWitness()
        defer { etcd.stop() }
        let vm = uniqueVM()
        let a = try WitnessLease(configuration: configuration(etcd.clientPort, tls: etcd.tls), vm: vm, node: "node-a", logger: logger, onLost: { _ in })
        let b = try WitnessLease(configuration: configuration(etcd.clientPort, tls: etcd.tls), vm: vm, node: "node-b", logger: logger, onLost: { _ in })
        defer { a.release(); b.release() }
        try a.acquire(.takeOver, timeout: .seconds(5))
        #expect(a.isValid)
        #expect(a.holder == "node-a")
        #expect(try a.tryAcquire(.takeOver), "acquiring what is held succeeds at once")

        #expect(try !b.tryAcquire(.takeOver))
        #expect(b.holder == "node-a")
        #expect(!b.isValid)
        let started = ContinuousClock.now
        #expect(throws: WitnessError.heldBy("node-a")) { try b.acquire(.takeOver, timeout: .milliseconds(800)) }
        #expect(ContinuousClock.now - started < .seconds(2))
        #expect(a.isValid, "a keeps renewing while b polls")
    }

    /// A claim whose reply was lost (the etcd member that took it died, or answered after the
    /// request timed out) is sent again, to another member, with the same lease and term. It must
    /// find its own write and count as acquired: refusing it as a newer term would fence a node
    /// by its own claim, and a resume never recovers from that.
    @Test(arguments: [nil, term(4, "node-b")])
    func aClaimSentAgainAfterItsReplyWasLostIsAcquired(_ expected: WitnessTerm?) throws {
        let etcd = try TLSWitness()
        defer { etcd.stop() }
        let client = EtcdClient(endpoints: [endpoint(etcd.clientPort)], timeout: .seconds(1), tls: etcd.tls)
        let vm = uniqueVM()
        let key = WitnessConfiguration.key(forVM: vm)
        let termKey = WitnessConfiguration.termKey(forVM: vm)
        if let expected { try client.put([(termKey, expected.encoded)], lease: 0) }
        let lease = try client.grantLease(ttl: .seconds(5)).id
        let next = WitnessTerm.next(after: expected, by: "node-a")
        #expect(try client.claim(key, value: "node-a", lease: lease, termKey: termKey, expecting: expected, next: next) == .acquired)
        #expect(try client.claim(key, value: "node-a", lease: lease, termKey: termKey, expecting: expected, next: next) == .acquired,
                "the same claim again finds its own write")
        #expect(try client.get(termKey)?.value == next.encoded, "written once: the term did not move on twice")

        // Not on another lease: that is an earlier run of this node (it crashed between etcd's
        // write and its own record), whose claim must stay refused, the safe side.
        let later = try client.grantLease(ttl: .seconds(5)).id
        #expect(try client.claim(key, value: "node-a", lease: later, termKey: termKey, expecting: expected, next: next) == .termIs(next))
    }

    @Test func anAbandonedHoldersLeaseExpiresAndTheOtherNodeTakesOver() throws {
        let etcd = try TLSWitness()
        defer { etcd.stop() }
        let vm = uniqueVM()
        let client = EtcdClient(endpoints: [endpoint(etcd.clientPort)], timeout: .seconds(1), tls: etcd.tls)
        // node-a claims with a 1 s lease and never renews it: a node that died.
        let dead = try client.grantLease(ttl: .seconds(1))
        #expect(try client.claim(WitnessConfiguration.key(forVM: vm), value: "node-a", lease: dead.id, termKey: WitnessConfiguration.termKey(forVM: vm),
                                 expecting: nil, next: term(1, "node-a")) == .acquired)
        let claimed = ContinuousClock.now

        let b = try WitnessLease(configuration: configuration(etcd.clientPort, tls: etcd.tls), vm: vm, node: "node-b", logger: logger, onLost: { _ in })
        defer { b.release() }
        try b.acquire(.takeOver, timeout: .seconds(5))
        let waited = ContinuousClock.now - claimed
        #expect(b.isValid)
        #expect(b.holder == "node-b")
        #expect(try client.get(WitnessConfiguration.key(forVM: vm))?.value == "node-b")
        // etcd revokes expired leases in a sweep every 500 ms, after the TTL.
        #expect(waited < .milliseconds(2500), "took \(waited)")
    }

    @Test func releaseLetsTheOtherNodeAcquireAtOnce() throws {
        let etcd = try TLSWitness()
        defer { etcd.stop() }
        let vm = uniqueVM()
        let config = WitnessConfiguration(endpoints: [endpoint(etcd.clientPort)], tls: etcd.tls, leaseTTL: .seconds(10))
        let a = try WitnessLease(configuration: config, vm: vm, node: "node-a", logger: logger, onLost: { _ in })
        let b = try WitnessLease(configuration: config, vm: vm, node: "node-b", logger: logger, onLost: { _ in })
        defer { b.release() }
        try a.acquire(.takeOver, timeout: .seconds(5))
        #expect(try !b.tryAcquire(.takeOver))
        a.release()
        #expect(!a.isValid)
        #expect(try b.tryAcquire(.takeOver), "no 10 s wait for a's lease: it was revoked")
        #expect(b.isValid)
        #expect(try !a.tryAcquire(.takeOver))
        #expect(a.holder == "node-b")
    }

    @Test func validityEndsBeforeEtcdExpiresTheLeaseWhenEtcdBecomesUnreachable() throws {
        let etcd = try TLSWitness()
        defer { etcd.stop() }
        let relay = try LinkEmulator(target: ("127.0.0.1", etcd.clientPort))
        defer { relay.close() }
        let vm = uniqueVM()
        let key = WitnessConfiguration.key(forVM: vm)
        let lost = LostReports()
        let a = try WitnessLease(configuration: configuration(relay.port, tls: etcd.tls), vm: vm, node: "node-a", logger: logger, onLost: lost.callback)
        defer { a.release() }
        let direct = EtcdClient(endpoints: [endpoint(etcd.clientPort)], timeout: .seconds(1), tls: etcd.tls)
        try a.acquire(.takeOver, timeout: .seconds(5))

        // Held over several TTLs: the keep-alive thread renews.
        sleep(.milliseconds(2500))
        #expect(a.isValid)
        #expect(try direct.get(key)?.value == "node-a")
        #expect(lost.all.isEmpty)

        relay.cut(.silence)
        let cut = ContinuousClock.now
        #expect(try eventually(within: .seconds(2)) { !a.isValid })
        #expect(ContinuousClock.now - cut < .seconds(1), "validity lasts at most TTL less the margin")
        #expect(try direct.get(key)?.value == "node-a", "etcd still has the claim: this node stopped acting first")

        #expect(try eventually(within: .seconds(1)) { !lost.all.isEmpty })
        #expect(lost.all.count == 1)
        let reason = try #require(lost.all.first)
        #expect(reason.hasPrefix("lease 0x"))
        #expect(reason.contains("not renewed for"))
        #expect(reason.contains("127.0.0.1:\(relay.port)"), "names the endpoint: \(reason)")

        #expect(try eventually(within: .seconds(3)) { try direct.get(key) == nil }, "then etcd expires it")
        let b = try WitnessLease(configuration: configuration(etcd.clientPort, tls: etcd.tls), vm: vm, node: "node-b", logger: logger, onLost: { _ in })
        defer { b.release() }
        #expect(try b.tryAcquire(.takeOver))
        sleep(.milliseconds(300))
        #expect(lost.all.count == 1, "onLost is called once")
    }

    /// Issue 19 item 4: P loses etcd and B; B takes over and serves; B's lease ends too; P comes
    /// back and finds the active key absent. P must not resume its diverged copy, not even after
    /// a restart; it may only take over later, as a backup resynchronised from B.
    @Test func aStalePrimaryThatFindsTheKeyAbsentIsFencedByTheNewerTerm() throws {
        let etcd = try TLSWitness()
        defer { etcd.stop() }
        let toP = try LinkEmulator(target: ("127.0.0.1", etcd.clientPort))
        defer { toP.close() }
        let toB = try LinkEmulator(target: ("127.0.0.1", etcd.clientPort))
        defer { toB.close() }
        let state = try TemporaryDirectory("p-state")
        defer { state.remove() }
        let vm = uniqueVM()
        let key = WitnessConfiguration.key(forVM: vm)
        let direct = EtcdClient(endpoints: [endpoint(etcd.clientPort)], timeout: .seconds(1), tls: etcd.tls)
        let record = WitnessTermRecord(directory: state.path)
        let p = try WitnessLease(configuration: configuration(toP.port, tls: etcd.tls), vm: vm, node: "node-a", termRecord: record,
                                 logger: logger, onLost: { _ in })
        let b = try WitnessLease(configuration: configuration(toB.port, tls: etcd.tls), vm: vm, node: "node-b", logger: logger, onLost: { _ in })
        defer { p.release(); b.release() }
        // The VM's first claim: nobody held a term, so P starts (resumes from nothing) in term 1.
        try p.acquire(.resume, timeout: .seconds(5))
        #expect(p.isValid)
        #expect(p.term == term(1, "node-a"))
        #expect(try record.load() == term(1, "node-a"), "recorded before P acts")

        // P is cut off from etcd (and, in a pair, from B): its lease lapses.
        toP.cut(.silence)
        #expect(try eventually(within: .seconds(2)) { !p.isValid })
        #expect(try eventually(within: .seconds(3)) { try direct.get(key) == nil })
        // B takes over and serves, in term 2.
        #expect(try b.tryAcquire(.takeOver))
        #expect(b.isValid)
        #expect(b.term == term(2, "node-b"))
        // Then B loses etcd too, and its lease ends.
        toB.cut(.silence)
        #expect(try eventually(within: .seconds(2)) { !b.isValid })
        #expect(try eventually(within: .seconds(3)) { try direct.get(key) == nil })

        // P reconnects and finds the active key absent: it must not take it and resume.
        toP.restore()
        #expect(try !p.tryAcquire(.resume), "a stale primary re-took the witness key")
        #expect(!p.isValid)
        #expect(p.holder == "node-b")
        let supersession = try #require(p.supersession)
        #expect(supersession == "node-b claimed the VM in witness term 2 after the term 1 (node-a) this node held last: "
                + "this copy of the VM must not resume")
        #expect(try direct.get(key) == nil, "the refused claim wrote nothing")
        #expect(try direct.get(WitnessConfiguration.termKey(forVM: vm))?.value == "2 node-b")
        #expect(try !p.tryAcquire(.resume), "refused for good")
        #expect(throws: WitnessError.superseded(supersession)) { try p.acquire(.resume, timeout: .milliseconds(300)) }

        // Restarted from its record, P is still refused.
        let restarted = try WitnessLease(configuration: configuration(toP.port, tls: etcd.tls), vm: vm, node: "node-a", termRecord: record,
                                         logger: logger, onLost: { _ in })
        defer { restarted.release() }
        #expect(restarted.term == term(1, "node-a"))
        #expect(try !restarted.tryAcquire(.resume))
        #expect(restarted.supersession == supersession)
        // As B's backup it may take over (after a full resync): the term moves on to 3.
        #expect(try restarted.tryAcquire(.takeOver))
        #expect(restarted.term == term(3, "node-a"))
        #expect(try record.load() == term(3, "node-a"))
    }

    @Test func aNodeResumesFromItsRecordedTermWhenNobodyClaimedTheVMSince() throws {
        let etcd = try TLSWitness()
        defer { etcd.stop() }
        let state = try TemporaryDirectory("a-state")
        defer { state.remove() }
        let vm = uniqueVM()
        let record = WitnessTermRecord(directory: state.path)
        let first = try WitnessLease(configuration: configuration(etcd.clientPort, tls: etcd.tls), vm: vm, node: "node-a", termRecord: record,
                                     logger: logger, onLost: { _ in })
        #expect(try first.tryAcquire(.resume))
        // An orderly stop: the claim goes, the term stays.
        first.release()
        let again = try WitnessLease(configuration: configuration(etcd.clientPort, tls: etcd.tls), vm: vm, node: "node-a", termRecord: record,
                                     logger: logger, onLost: { _ in })
        defer { again.release() }
        #expect(try again.tryAcquire(.resume))
        #expect(again.term == term(2, "node-a"))
        #expect(try record.load() == term(2, "node-a"))

        // Another node that never held a term cannot resume a VM that ran: it is not its history.
        let other = try WitnessLease(configuration: configuration(etcd.clientPort, tls: etcd.tls), vm: vm, node: "node-b", logger: logger,
                                     onLost: { _ in })
        again.release()
        #expect(try !other.tryAcquire(.resume))
        #expect(other.supersession == "node-a claimed the VM in witness term 2 after no term (this node never held the VM's witness key): "
                + "this copy of the VM must not resume")
    }

    @Test func aPausedWitnessEndsValidityByItself() throws {
        let etcd = try TLSWitness()
        defer { etcd.stop() }
        let lost = LostReports()
        let a = try WitnessLease(configuration: configuration(etcd.clientPort, tls: etcd.tls), vm: uniqueVM(), node: "node-a", logger: logger,
                             onLost: lost.callback)
        try a.acquire(.takeOver, timeout: .seconds(5))
        #expect(a.isValid)
        etcd.pause()
        defer { etcd.resume() }
        let paused = ContinuousClock.now
        #expect(try eventually(within: .seconds(2)) { !a.isValid })
        #expect(ContinuousClock.now - paused < .seconds(1))
        #expect(try eventually(within: .seconds(1)) { !lost.all.isEmpty })
        let reason = try #require(lost.all.first)
        #expect(reason.contains("not renewed for"))
        #expect(reason.contains("etcd at 127.0.0.1:\(etcd.clientPort) unreachable (no reply within 200 ms)"), "\(reason)")
        #expect(throws: WitnessError.self) { try a.tryAcquire(.takeOver) }
        etcd.resume()
        a.release()
    }

    @Test func aClientWithoutTheCAsCertificateOrWithoutTLSIsRefused() throws {
        let etcd = try TLSWitness()
        defer { etcd.stop() }
        // A certificate from another CA, with a name etcd would otherwise accept.
        let stranger = try TemporaryDirectory("stranger-ca")
        defer { stranger.remove() }
        try CertificateAuthority.initialize(directory: "\(stranger.path)/certs", nodes: [EtcdProcess.serverName, "node-a"])
        let forged = EtcdClient(endpoints: [endpoint(etcd.clientPort)], timeout: .seconds(1),
                                tls: TLSConfiguration(directory: "\(stranger.path)/certs", node: "node-a", peer: EtcdProcess.serverName))
        #expect { _ = try forged.grantLease(ttl: .seconds(1)) } throws: { error in
            guard case .unreachable(let what) = error as? WitnessError else { return false }
            return what.contains("over TLS")
        }
        let plain = EtcdClient(endpoints: [endpoint(etcd.clientPort)], timeout: .seconds(1))
        #expect(throws: WitnessError.self) { _ = try plain.grantLease(ttl: .seconds(1)) }
        // The right CA but missing credential files: a clear error, not a crash.
        let missing = EtcdClient(endpoints: [endpoint(etcd.clientPort)], timeout: .seconds(1),
                                 tls: TLSConfiguration(directory: "\(stranger.path)/none", node: "node-a", peer: EtcdProcess.serverName))
        #expect { _ = try missing.grantLease(ttl: .seconds(1)) } throws: { error in
            guard case .rejected(let what) = error as? WitnessError else { return false }
            return what.contains("credentials")
        }
        let client = EtcdClient(endpoints: [endpoint(etcd.clientPort)], timeout: .seconds(1), tls: etcd.tls)
        #expect(try client.grantLease(ttl: .seconds(1)).ttl == .seconds(1))
    }

    @Test func anUnreachableEndpointIsNamed() throws {
        // A port nobody listens on (connection refused), and one that accepts but never answers.
        let closedPort = try TCPListener(endpoint: endpoint(0)).endpoint.port
        let silent = try TCPListener(endpoint: endpoint(0))
        let client = EtcdClient(endpoints: [endpoint(closedPort), silent.endpoint], timeout: .milliseconds(200))
        #expect(throws: WitnessError.unreachable(
            "etcd at 127.0.0.1:\(closedPort) unreachable (connection refused); etcd at \(silent.endpoint) unreachable (no reply within 200 ms)"
        )) { try client.grantLease(ttl: .seconds(1)) }

        let lease = try WitnessLease(configuration: .init(endpoints: [endpoint(closedPort)], tls: nil, requestTimeout: .milliseconds(200)), vm: uniqueVM(),
                                 node: "node-a", logger: logger, onLost: { _ in })
        #expect(throws: WitnessError.unreachable("etcd at 127.0.0.1:\(closedPort) unreachable (connection refused)")) {
            try lease.tryAcquire(.takeOver)
        }
        let started = ContinuousClock.now
        #expect(throws: WitnessError.unreachable("etcd at 127.0.0.1:\(closedPort) unreachable (connection refused)")) {
            try lease.acquire(.takeOver, timeout: .milliseconds(500))
        }
        #expect(ContinuousClock.now - started < .seconds(1), "retries stop at the timeout")
        #expect(!lease.isValid)
    }

    @Test func aMalformedReplyIsReportedNotACrash() throws {
        let replies = [
            "SSH-2.0-OpenSSH_9.2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
            "HTTP/1.1 200 OK\r\nContent-Length: 24\r\n\r\n{\"ID\":\"12\",\"TTL\":\"soon\"}",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"ID\":",
        ]
        let expected = [
            "not an HTTP reply", "not a JSON object", "lease grant reply without ID", "TTL \"soon\" is not an integer",
            "bad chunk size line", "reply ended after 6 of 100 body bytes",
        ]
        let server = try FakeHTTPServer(replies: replies)
        defer { server.stop() }
        let client = EtcdClient(endpoints: [server.endpoint], timeout: .seconds(2))
        for fragment in expected {
            #expect {
                _ = try client.grantLease(ttl: .seconds(1))
            } throws: { error in
                guard case .malformedReply(let what) = error as? WitnessError else { return false }
                return what.contains(fragment)
            }
        }
    }

    @Test func anEtcdErrorIsRejectedWithItsMessage() throws {
        let etcd = try TLSWitness()
        defer { etcd.stop() }
        let client = EtcdClient(endpoints: [endpoint(etcd.clientPort)], timeout: .seconds(1), tls: etcd.tls)
        #expect(throws: WitnessError.rejected("HTTP 404: etcdserver: requested lease not found")) {
            let vm = uniqueVM()
            return try client.claim(WitnessConfiguration.key(forVM: vm), value: "node-a", lease: 12345, termKey: WitnessConfiguration.termKey(forVM: vm),
                                    expecting: nil, next: term(1, "node-a"))
        }
    }
}

/// Answers each connection with the next scripted reply, after reading the request whole.
private final class FakeHTTPServer: Sendable {
    let endpoint: Endpoint
    private let listener: TCPListener
    private let thread: JoinableThread

    init(replies: [String]) throws {
        let listener = try TCPListener(endpoint: Endpoint(host: "127.0.0.1", port: 0))
        self.listener = listener
        endpoint = listener.endpoint
        thread = JoinableThread(name: "fake-etcd") {
            for reply in replies {
                guard let (fd, _) = try? listener.accept() else { return }
                FakeHTTPServer.readRequest(fd)
                let bytes = Array(reply.utf8)
                // Safe: write reads `bytes.count` bytes of the array, alive during the call.
                _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
                // Half-close and drain, so the client reads the reply rather than a reset.
                shutdown(fd, Int32(SHUT_WR))
                FakeHTTPServer.readRequest(fd)
                close(fd)
            }
        }
    }

    func stop() {
        listener.close()
        thread.join()
    }

    /// Reads until the request's body is in (or the peer closes).
    private static func readRequest(_ fd: Int32) {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            // Safe: read writes at most `buffer.count` bytes into the array's storage.
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            guard n > 0 else { return }
            received += buffer[..<n]
            let text = String(decoding: received, as: UTF8.self)
            guard let end = text.range(of: "\r\n\r\n") else { continue }
            let length = text[..<end.lowerBound].split(separator: "\r\n")
                .first { $0.lowercased().hasPrefix("content-length:") }
                .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
            if text[end.upperBound...].utf8.count >= length { return }
        }
    }
}
