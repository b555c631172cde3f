import Foundation
import Testing
import UnderstudyAgent
import UnderstudyProtocol
import UnderstudyReplica
import UnderstudyTransport

/// Catch-up after a lost connection, with a synthetic guest over loopback TLS.
@Suite("Catch-up after a lost link")
struct CatchUpTests {
    let identity = VMIdentity(id: "vm-catch-up-test", memorySize: 8 << 20)

    func configuration(_ workspace: Workspace, _ backup: RunningBackup, backlog: ReplicationBacklog, firstEpoch: UInt64 = 1) -> PrimaryConfiguration {
        var configuration = PrimaryConfiguration(nodeName: "primary", backup: backup.endpoint,
                                                 tls: workspace.tls(node: "primary", peer: "backup"), interval: .zero)
        configuration.backlog = backlog
        configuration.firstEpoch = firstEpoch
        return configuration
    }

    func replicaEqualsGuest(_ backup: RunningBackup, _ guest: SyntheticGuest) throws -> Bool {
        let replica = try Data(contentsOf: URL(fileURLWithPath: backup.receiver.store.memoryPath))
        return replica.withUnsafeBytes { memcmp($0.baseAddress!, guest.memory.baseAddress!, guest.memory.count) == 0 }
    }

    @Test func aLostSessionIsCaughtUpWithOneCheckpointAndTheReplicaIsExact() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let backup = try RunningBackup(workspace: workspace, identity: identity)
        defer { backup.stop() }
        let guest = SyntheticGuest(identity: identity, pagesPerEpoch: 64, mix: [.text, .sparseUpdate, .zero, .random, .binary], seed: 7)
        let backlog = ReplicationBacklog(memorySize: Int(identity.memorySize), journalPath: "\(workspace.path)/catch-up.journal",
                                         journalLimit: 1 << 20)

        let first = PrimaryReplicator(source: guest, configuration: configuration(workspace, backup, backlog: backlog), logger: quietLogger)
        try first.start()
        #expect(first.statistics.start == .fullSync(reason: "no checkpoint acknowledged yet"))
        try first.runCheckpoints(count: 20)
        try first.drain(timeout: .seconds(20))
        // More checkpoints, some still unacknowledged when the link drops.
        try first.runCheckpoints(count: 3)
        first.abandon()
        let fullSyncBytes = first.statistics.syncWireBytes
        // The guest runs on while no backup can be reached.
        guest.write(pages: 300)

        let second = PrimaryReplicator(source: guest, configuration: configuration(workspace, backup, backlog: backlog,
                                                                                     firstEpoch: first.lastCapturedEpoch + 1),
                                       logger: quietLogger)
        defer { second.stop() }
        try second.start()
        guard case .catchUp(let base) = second.statistics.start else {
            Issue.record("expected a catch-up, got \(String(describing: second.statistics.start))")
            return
        }
        #expect(base >= 20 && base <= 23)
        try second.runCheckpoints(count: 5)
        try second.drain(timeout: .seconds(20))
        let stats = second.statistics
        #expect(stats.syncWireBytes == 0, "no full synchronisation")
        #expect(stats.catchUpPages >= 300, "the pages written while disconnected, and those of unacknowledged checkpoints")
        #expect(stats.catchUpWireBytes < fullSyncBytes / 4, "\(stats.catchUpWireBytes) bytes against \(fullSyncBytes) for a full sync")
        #expect(stats.catchUpDuration != nil)
        #expect(backup.waitForCommit(first.lastCapturedEpoch + 5))
        #expect(try replicaEqualsGuest(backup, guest), "after the catch-up the replica equals the guest byte for byte")
    }

    @Test func aReplicaThatCannotBeCaughtUpIsResynchronisedInFullAndSaysWhy() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let backup = try RunningBackup(workspace: workspace, identity: identity)
        let guest = SyntheticGuest(identity: identity, pagesPerEpoch: 32, mix: [.text, .random], seed: 9)
        let backlog = ReplicationBacklog(memorySize: Int(identity.memorySize), journalPath: "\(workspace.path)/catch-up.journal",
                                         journalLimit: 1 << 20)
        let first = PrimaryReplicator(source: guest, configuration: configuration(workspace, backup, backlog: backlog), logger: quietLogger)
        try first.start()
        try first.runCheckpoints(count: 10)
        try first.drain(timeout: .seconds(20))
        first.abandon()
        backup.stop()
        // Another backup, with an empty replica, answers at the same place.
        let fresh = try RunningBackup(workspace: workspace, identity: identity, replicaDirectory: "\(workspace.path)/replica-2")
        defer { fresh.stop() }
        guest.write(pages: 50)
        let second = PrimaryReplicator(source: guest, configuration: configuration(workspace, fresh, backlog: backlog, firstEpoch: 11),
                                       logger: quietLogger)
        defer { second.stop() }
        try second.start()
        guard case .fullSync(let reason?) = second.statistics.start else {
            Issue.record("expected a full sync with a reason, got \(String(describing: second.statistics.start))")
            return
        }
        #expect(reason.contains("committed at checkpoint 0"), "\(reason)")
        try second.runCheckpoints(count: 5)
        try second.drain(timeout: .seconds(20))
        #expect(fresh.waitForCommit(15))
        #expect(try replicaEqualsGuest(fresh, guest))
    }

    @Test func theBandwidthCapHoldsTheStreamToItsRateAndTheIntervalStretches() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let backup = try RunningBackup(workspace: workspace, identity: identity)
        defer { backup.stop() }
        // Random pages do not compress: about 1 MiB on the wire per checkpoint.
        let guest = SyntheticGuest(identity: identity, pagesPerEpoch: 256, mix: [.random], seed: 3)
        var configuration = PrimaryConfiguration(nodeName: "primary", backup: backup.endpoint,
                                                 tls: workspace.tls(node: "primary", peer: "backup"), interval: .milliseconds(10))
        configuration.bandwidthLimit = 4_000_000
        configuration.maximumInterval = .seconds(1)
        let primary = PrimaryReplicator(source: guest, configuration: configuration, logger: quietLogger)
        defer { primary.stop() }
        try primary.start()
        let before = primary.statistics.wireBytes + primary.statistics.syncWireBytes
        let started = ContinuousClock.now
        try primary.runCheckpoints(count: 10)
        try primary.drain(timeout: .seconds(30))
        let elapsed = ContinuousClock.now - started
        let stats = primary.statistics
        let sent = Double(stats.wireBytes + stats.syncWireBytes - before)
        // The bucket's burst (80 KB) is all that may go above the rate.
        #expect(sent / elapsed.seconds <= 4_000_000 * 1.1, "\(sent) bytes in \(elapsed)")
        #expect(stats.interval?.reason != .shortest, "10 MB/s of checkpoints over a 4 MB/s cap stretch the interval: \(String(describing: stats.interval))")
        #expect((stats.interval?.interval ?? .zero) >= .milliseconds(100))
    }
}
