import Foundation
import Testing
@testable import UnderstudyAgent
import UnderstudyProtocol

@Suite("ReplicationBacklog")
struct ReplicationBacklogTests {
    let journal = FileManager.default.temporaryDirectory.appendingPathComponent("understudy-backlog-\(UUID().uuidString)/catch-up.journal").path

    func backlog(limit: Int = 1 << 20) -> ReplicationBacklog {
        ReplicationBacklog(memorySize: 1 << 20, journalPath: journal, journalLimit: limit)
    }

    static func write(_ offset: UInt64, _ byte: UInt8) -> DiskChange { .write(offset: offset, data: .bytes([byte])) }

    func disk(of plan: ReplicationBacklog.CatchUp, in backlog: ReplicationBacklog) throws -> [DiskChange] {
        var changes: [DiskChange] = []
        for entry in plan.entries {
            if let range = entry.journalRange { try backlog.readJournal(range) { changes += $0 } }
            changes += entry.changes
        }
        if let tail = plan.tail { try backlog.readJournal(tail) { changes += $0 } }
        return changes
    }

    @Test("a catch-up carries every checkpoint after the replica's epoch and the writes made while no session ran, in order")
    func catchUpPlan() throws {
        let backlog = backlog()
        defer { try? FileManager.default.removeItem(atPath: (journal as NSString).deletingLastPathComponent) }
        #expect(throws: CatchUpRefusal.self) { try backlog.catchUp(onto: 0).get() }
        backlog.captured(epoch: 1, pages: [1, 2], changes: [Self.write(0, 1)])
        backlog.acknowledged(through: 1)
        backlog.captured(epoch: 2, pages: [2, 3], changes: [Self.write(0, 2)])
        backlog.captured(epoch: 3, pages: [4], changes: [Self.write(0, 3), .flush])
        #expect(backlog.spill([Self.write(0, 4)]) == nil)
        #expect(backlog.spill([Self.write(0, 5)]) == nil)
        #expect(backlog.journalBytes > 0)

        // The backup applied epoch 2 but its ACK was lost: only 3 and the tail remain to send.
        let plan = try backlog.catchUp(onto: 2).get()
        #expect(plan.base == 2)
        #expect(plan.entries.map(\.epoch) == [3])
        #expect(plan.resentPages == [4])
        #expect(try disk(of: plan, in: backlog) == [Self.write(0, 3), .flush, Self.write(0, 4), Self.write(0, 5)])

        // The catch-up checkpoint 4 takes the tail over; lost before its ACK, the next catch-up resends it all.
        backlog.captured(epoch: 4, pages: [9], changes: [Self.write(0, 6)])
        #expect(backlog.spill([Self.write(0, 7)]) == nil)
        let again = try backlog.catchUp(onto: 2).get()
        #expect(again.entries.map(\.epoch) == [3, 4])
        #expect(again.resentPages == [4, 9])
        #expect(try disk(of: again, in: backlog) == (3...7).flatMap { $0 == 3 ? [Self.write(0, 3), .flush] : [Self.write(0, UInt8($0))] })

        // Acknowledged at last: nothing is kept, the journal is emptied.
        backlog.captured(epoch: 5, pages: [], changes: [])
        backlog.acknowledged(through: 5)
        #expect(backlog.journalBytes == 0)
        #expect(try backlog.catchUp(onto: 5).get().entries.isEmpty)
    }

    @Test("a catch-up knows when its base was captured, whether the base was acknowledged or only applied")
    func catchUpBaseCapture() throws {
        let backlog = backlog()
        let t0 = ContinuousClock.now
        backlog.captured(epoch: 1, pages: [1], changes: [], at: t0)
        backlog.acknowledged(through: 1)
        backlog.captured(epoch: 2, pages: [2], changes: [], at: t0 + .seconds(1))
        #expect(try backlog.catchUp(onto: 1).get().baseCapturedAt == t0)
        // The backup applied epoch 2 but its ACK was lost.
        #expect(try backlog.catchUp(onto: 2).get().baseCapturedAt == t0 + .seconds(1))
        // A base this backlog never saw captured: not known.
        backlog.captured(epoch: 3, pages: [3], changes: [])
        backlog.acknowledged(through: 3)
        #expect(try backlog.catchUp(onto: 3).get().baseCapturedAt == nil)
    }

    @Test("a replica older than the last acknowledged checkpoint, or newer than any captured, needs a full resync")
    func replicaOutOfRange() {
        let backlog = backlog()
        backlog.captured(epoch: 7, pages: [1], changes: [])
        backlog.acknowledged(through: 7)
        backlog.captured(epoch: 8, pages: [1], changes: [])
        #expect(throws: CatchUpRefusal.self) { try backlog.catchUp(onto: 6).get() }
        #expect(throws: CatchUpRefusal.self) { try backlog.catchUp(onto: 9).get() }
        #expect((try? backlog.catchUp(onto: 8).get()) != nil)
    }

    @Test("an overflowing journal, a failed capture or a full sync rule a catch-up out, and say why")
    func brokenBacklog() throws {
        let small = backlog(limit: 100)
        defer { try? FileManager.default.removeItem(atPath: (journal as NSString).deletingLastPathComponent) }
        small.captured(epoch: 1, pages: [], changes: [])
        small.acknowledged(through: 1)
        let overflow = small.spill([.write(offset: 0, data: .bytes(Array(repeating: 1, count: 200)))])
        #expect(overflow?.contains("journal is full") == true)
        #expect(small.journalBytes == 0)
        #expect(throws: CatchUpRefusal.self) { try small.catchUp(onto: 1).get() }

        let failed = backlog()
        failed.captured(epoch: 1, pages: [], changes: [])
        failed.acknowledged(through: 1)
        failed.invalidate("a checkpoint capture failed: QEMU died")
        #expect((try? failed.catchUp(onto: 1).get()) == nil)
        // A full synchronisation starts afresh: once something is acknowledged, catch-up works again.
        failed.reset()
        #expect((try? failed.catchUp(onto: 0).get()) == nil)
        failed.captured(epoch: 2, pages: [5], changes: [])
        failed.acknowledged(through: 2)
        #expect((try? failed.catchUp(onto: 2).get()) != nil)
    }
}
