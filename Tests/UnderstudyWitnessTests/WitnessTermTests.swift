import Testing
import UnderstudyWitness

private let t0 = ContinuousClock.now

private func at(_ milliseconds: Int) -> ContinuousClock.Instant { t0 + .milliseconds(milliseconds) }

private func term(_ number: UInt64, _ holder: String) -> WitnessTerm { WitnessTerm(number: number, holder: holder) }

/// `node`'s machine after its claim went through in `lease` and the claimed term was recorded.
private func holding(_ node: String, term recorded: WitnessTerm?, intent: ClaimIntent, lease: Int64, at start: Int) -> WitnessLeaseStateMachine {
    var machine = WitnessLeaseStateMachine(node: node, term: recorded)
    _ = machine.start(at: at(start), intent: intent)
    _ = machine.granted(id: lease, ttl: .seconds(2), sentAt: at(start))
    _ = machine.claimed(at: at(start + 10))
    _ = machine.termRecorded(at: at(start + 10))
    return machine
}

/// The fencing term: every claim moves it on, a resume needs the term this node held.
@Suite struct WitnessTermTests {
    @Test func termsRoundTripAsNumberAndHolder() {
        #expect(term(7, "node-a").encoded == "7 node-a")
        #expect(WitnessTerm(encoded: "7 node-a") == term(7, "node-a"))
        #expect(WitnessTerm(encoded: "12 node with spaces") == term(12, "node with spaces"))
        for bad in ["", "7", "7 ", "0 node-a", "-1 node-a", "x node-a", " 7 node-a"] {
            #expect(WitnessTerm(encoded: bad[...]) == nil, "\"\(bad)\"")
        }
        #expect(WitnessTerm.next(after: nil, by: "node-a") == term(1, "node-a"))
        #expect(WitnessTerm.next(after: term(4, "node-b"), by: "node-a") == term(5, "node-a"))
    }

    /// Issue 19 item 4, step by step: P (node-a) holds term 1 and is cut off; B (node-b) takes
    /// over in term 2; B's lease lapses too; P comes back to a free key, and must not resume.
    @Test func theIssuesPartitionSequenceSupersedesTheStalePrimary() {
        var p = holding("node-a", term: nil, intent: .resume, lease: 7, at: 0)
        #expect(p.mayAct(at(20)))
        #expect(p.term == term(1, "node-a"))
        #expect(p.poll(at(1800)) == .lost("lease 0x7 not renewed for 1.8 s: no keep-alive reply"))

        var b = WitnessLeaseStateMachine(node: "node-b", term: nil)
        #expect(b.start(at: at(2000), intent: .takeOver) == .sendGrant(ttl: .seconds(2)))
        #expect(b.granted(id: 9, ttl: .seconds(2), sentAt: at(2000)) == .sendClaim(lease: 9, expecting: nil, next: term(1, "node-b")))
        #expect(b.termMismatch(current: term(1, "node-a"), at: at(2010)) == .sendClaim(lease: 9, expecting: term(1, "node-a"), next: term(2, "node-b")),
                "a takeover claims the term after whatever it finds")
        #expect(b.claimed(at: at(2020)) == .recordTerm(term(2, "node-b")))
        _ = b.termRecorded(at: at(2020))
        #expect(b.mayAct(at(2030)))
        #expect(b.poll(at(3800)) == .lost("lease 0x9 not renewed for 1.8 s: no keep-alive reply"))

        // P is back; the active key is free, but the term key says 2, node-b.
        #expect(p.start(at: at(5000), intent: .resume) == .sendGrant(ttl: .seconds(2)))
        #expect(p.granted(id: 11, ttl: .seconds(2), sentAt: at(5000)) == .sendClaim(lease: 11, expecting: term(1, "node-a"), next: term(2, "node-a")))
        let reason = "node-b claimed the VM in witness term 2 after the term 1 (node-a) this node held last: this copy of the VM must not resume"
        #expect(p.termMismatch(current: term(2, "node-b"), at: at(5010)) == .superseded(reason))
        #expect(p.state == .superseded(p.lease!, by: term(2, "node-b")))
        #expect(p.supersession == reason)
        #expect(!p.mayAct(at(5010)))
        #expect(p.term == term(1, "node-a"), "the term it held stays what it was")
        #expect(p.start(at: at(5020), intent: .resume) == .superseded(reason), "refused for good, without asking etcd")
        #expect(p.poll(at(5050)) == .superseded(reason))

        // Demoted to the backup (and resynchronised), P may take over: the term after the current one.
        #expect(p.start(at: at(5100), intent: .takeOver) == .sendClaim(lease: 11, expecting: term(1, "node-a"), next: term(2, "node-a")))
        #expect(p.termMismatch(current: term(2, "node-b"), at: at(5110)) == .sendClaim(lease: 11, expecting: term(2, "node-b"), next: term(3, "node-a")))
        #expect(p.claimed(at: at(5120)) == .recordTerm(term(3, "node-a")))
        #expect(p.supersession == nil)
        _ = p.termRecorded(at: at(5120))
        #expect(p.mayAct(at(5130)))
    }

    @Test func aRestartedNodeResumesOnlyFromItsRecordedTerm() {
        var machine = WitnessLeaseStateMachine(node: "node-a", term: term(5, "node-a"))
        _ = machine.start(at: t0, intent: .resume)
        #expect(machine.granted(id: 7, ttl: .seconds(2), sentAt: t0) == .sendClaim(lease: 7, expecting: term(5, "node-a"), next: term(6, "node-a")))
        #expect(machine.claimed(at: at(10)) == .recordTerm(term(6, "node-a")))
        _ = machine.termRecorded(at: at(10))
        #expect(machine.term == term(6, "node-a"))
        // Lost and regained without anyone else claiming: the next resume expects term 6.
        _ = machine.poll(at(1800))
        _ = machine.start(at: at(2000), intent: .resume)
        #expect(machine.granted(id: 8, ttl: .seconds(2), sentAt: at(2000)) == .sendClaim(lease: 8, expecting: term(6, "node-a"), next: term(7, "node-a")))
    }

    @Test func aNodeThatNeverHeldATermCannotResumeAVMThatRan() {
        var machine = WitnessLeaseStateMachine(node: "node-a", term: nil)
        _ = machine.start(at: t0, intent: .resume)
        _ = machine.granted(id: 7, ttl: .seconds(2), sentAt: t0)
        #expect(machine.termMismatch(current: term(3, "node-b"), at: at(10)) == .superseded(
            "node-b claimed the VM in witness term 3 after no term (this node never held the VM's witness key): this copy of the VM must not resume"))
    }

    @Test func aTermKeyThatVanishedSupersedesAResume() {
        var machine = WitnessLeaseStateMachine(node: "node-a", term: term(3, "node-a"))
        _ = machine.start(at: t0, intent: .resume)
        _ = machine.granted(id: 7, ttl: .seconds(2), sentAt: t0)
        #expect(machine.termMismatch(current: nil, at: at(10)) == .superseded(
            "the witness term key is gone (this node's last was term 3 (node-a)): its copy of the VM must not resume"))
    }

    @Test func theNodeActsOnlyOnceTheTermIsRecordedAndRetriesAFailedRecord() {
        var machine = WitnessLeaseStateMachine(configuration: .init(retryInterval: .milliseconds(250)), node: "node-a", term: nil)
        _ = machine.start(at: t0, intent: .resume)
        _ = machine.granted(id: 7, ttl: .seconds(2), sentAt: t0)
        #expect(machine.claimed(at: at(10)) == .recordTerm(term(1, "node-a")))
        #expect(!machine.mayAct(at(10)))
        #expect(machine.requestFailed("No space left on device", at: at(20)) == .wait(until: at(270)))
        #expect(!machine.mayAct(at(100)))
        #expect(machine.poll(at(270)) == .recordTerm(term(1, "node-a")))
        #expect(machine.termRecorded(at: at(280)) == .wait(until: t0 + .seconds(2) / 3))
        #expect(machine.mayAct(at(280)))
    }

    @Test func aRecordThatOutlastsTheLeaseIsNeverActedOnAndTheNextClaimExpectsItsTerm() {
        var machine = WitnessLeaseStateMachine(node: "node-a", term: nil)
        _ = machine.start(at: t0, intent: .resume)
        _ = machine.granted(id: 7, ttl: .seconds(2), sentAt: t0)
        _ = machine.claimed(at: at(10))
        _ = machine.requestFailed("EIO", at: at(20))
        #expect(machine.poll(at(1800)) == .sendGrant(ttl: .seconds(2)))
        #expect(!machine.mayAct(at(1800)))
        #expect(machine.granted(id: 8, ttl: .seconds(2), sentAt: at(1800)) == .sendClaim(lease: 8, expecting: term(1, "node-a"), next: term(2, "node-a")))
    }
}
