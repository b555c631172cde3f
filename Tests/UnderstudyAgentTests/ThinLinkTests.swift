import Foundation
import Testing
import UnderstudyAgent
import UnderstudyHarness
import UnderstudyProtocol
import UnderstudyReplica
import UnderstudySystem
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
        let guest = SyntheticGuest(identity: identity, pagesPerCheckpoint: 64, mix: [.text, .sparseUpdate, .zero, .random, .binary], seed: 7)
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
        // A backup serves one primary at a time: until it has applied and synced what the dropped
        // session queued and seen it end, it refuses the next one as busy (a real primary retries).
        #expect(backup.waitForSessionEnd(sessions: 1).sessionsEnded == 1)

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

    @Test func aCatchUpAfterACutLongerThanTheObjectiveRaisesTheAlarmWhileItIsSent() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let backup = try RunningBackup(workspace: workspace, identity: identity)
        defer { backup.stop() }
        let link = try LinkEmulator(target: ("127.0.0.1", backup.endpoint.port))
        defer { link.close() }
        let guest = SyntheticGuest(identity: identity, pagesPerCheckpoint: 16, mix: [.random], seed: 11)
        let backlog = ReplicationBacklog(memorySize: Int(identity.memorySize), journalPath: "\(workspace.path)/catch-up.journal",
                                         journalLimit: 1 << 20)
        func asynchronous(firstEpoch: UInt64) -> PrimaryConfiguration {
            var configuration = configuration(workspace, backup, backlog: backlog, firstEpoch: firstEpoch)
            configuration.backup = Endpoint(host: "127.0.0.1", port: link.port)
            configuration.interval = .milliseconds(10)
            configuration.recoveryPoint = RecoveryPointObjective(objective: .milliseconds(500), throttleGuest: false)
            return configuration
        }
        let first = PrimaryReplicator(source: guest, configuration: asynchronous(firstEpoch: 1), logger: quietLogger)
        try first.start()
        try first.runCheckpoints(count: 10)
        try first.drain(timeout: .seconds(20))

        // The link is cut for longer than the objective while the guest runs on, and comes back at 1 MB/s.
        link.cut()
        first.abandon()
        guest.write(pages: 512)
        #expect(backup.waitForSessionEnd(sessions: 1).sessionsEnded == 1)
        Thread.sleep(forTimeInterval: 0.8)
        link.setShape(LinkEmulator.Shape(bytesPerSecond: 1_000_000))
        link.restore()

        let second = PrimaryReplicator(source: guest, configuration: asynchronous(firstEpoch: first.lastCapturedEpoch + 1), logger: quietLogger)
        defer { second.stop() }
        try second.start()
        let during = second.statistics
        guard case .catchUp = during.start else {
            Issue.record("expected a catch-up, got \(String(describing: during.start))")
            return
        }
        // The replica is still at the catch-up's base, captured before the cut.
        #expect(during.lag.map { $0 >= .milliseconds(800) } == true, "\(String(describing: during.lag))")
        #expect(during.recoveryPointExceeded)
        #expect(during.interval?.reason == .catchingUp)

        try second.runCheckpoints(count: 3)
        try second.drain(timeout: .seconds(20))
        let after = second.statistics
        #expect(after.catchUpDuration.map { $0 >= .seconds(1) } == true, "about 2 MB at 1 MB/s: \(String(describing: after.catchUpDuration))")
        #expect(after.interval?.reason != .catchingUp)
        #expect(after.catchUpBytesSent == after.catchUpBytesTotal && after.catchUpBytesTotal >= after.catchUpWireBytes)
        #expect(after.catchUpBytesTotal > 1_000_000, "the pages written during the cut: \(after.catchUpBytesTotal)")
    }

    @Test func aReplicaThatCannotBeCaughtUpIsResynchronisedInFullAndSaysWhy() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let backup = try RunningBackup(workspace: workspace, identity: identity)
        let guest = SyntheticGuest(identity: identity, pagesPerCheckpoint: 32, mix: [.text, .random], seed: 9)
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
        let guest = SyntheticGuest(identity: identity, pagesPerCheckpoint: 256, mix: [.random], seed: 3)
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

/// Asynchronous protection with a synthetic guest over loopback TLS: the lag against the objective.
@Suite("Asynchronous protection")
struct AsynchronousModeTests {
    let identity = VMIdentity(id: "vm-async-test", memorySize: 8 << 20)

    func run(objective: Duration, throttle: Bool) throws -> PrimaryStatistics {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let backup = try RunningBackup(workspace: workspace, identity: identity)
        defer { backup.stop() }
        let guest = SyntheticGuest(identity: identity, pagesPerCheckpoint: 16, mix: [.text, .sparseUpdate], seed: 5)
        var configuration = PrimaryConfiguration(nodeName: "primary", backup: backup.endpoint,
                                                 tls: workspace.tls(node: "primary", peer: "backup"), interval: .milliseconds(10))
        configuration.recoveryPoint = RecoveryPointObjective(objective: objective, throttleGuest: throttle)
        let primary = PrimaryReplicator(source: guest, configuration: configuration, logger: quietLogger)
        defer { primary.stop() }
        try primary.start()
        try primary.runCheckpoints(count: 30)
        try primary.drain(timeout: .seconds(20))
        return primary.statistics
    }

    @Test func aReplicaWithinItsObjectiveRaisesNothingAndIsNotThrottled() throws {
        let stats = try run(objective: .seconds(10), throttle: true)
        #expect(stats.lag != nil && stats.lag! < .seconds(10))
        #expect(stats.lagPeaks.count >= 1)
        #expect(!stats.recoveryPointExceeded)
        #expect(stats.throttle == 0 && stats.throttledFor == .zero)
    }

    @Test func aLagOverTheObjectiveRaisesTheAlertAndThrottlesTheGuestWhenAsked() throws {
        // Every lag exceeds a microsecond: the alert stays raised and the throttle climbs.
        let throttled = try run(objective: .microseconds(1), throttle: true)
        #expect(throttled.recoveryPointExceeded)
        #expect(throttled.throttle >= 0.5, "\(throttled.throttle)")
        // 30 checkpoints of 10 ms, paused from 20 % rising to 90 % of each.
        #expect(throttled.throttledFor >= .milliseconds(100), "\(throttled.throttledFor)")
        let alertOnly = try run(objective: .microseconds(1), throttle: false)
        #expect(alertOnly.recoveryPointExceeded)
        #expect(alertOnly.throttle == 0 && alertOnly.throttledFor == .zero)
    }
}

/// The adaptive interval against a link that is slower than the checkpoints, with no cap
/// configured: the acknowledgements show the link's pace.
@Suite("Adaptive interval")
struct AdaptiveIntervalTests {
    let identity = VMIdentity(id: "vm-interval-test", memorySize: 8 << 20)

    @Test func withoutACapTheIntervalStretchesToTheThroughputTheLinkAchieves() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let backup = try RunningBackup(workspace: workspace, identity: identity)
        defer { backup.stop() }
        let link = try LinkEmulator(target: ("127.0.0.1", backup.endpoint.port), shape: LinkEmulator.Shape(oneWayDelay: .milliseconds(20)))
        defer { link.close() }
        // 64 incompressible pages per checkpoint, whatever the interval: a guest rewriting its working set.
        let guest = SyntheticGuest(identity: identity, pagesPerCheckpoint: 64, mix: [.random], seed: 13)
        var configuration = PrimaryConfiguration(nodeName: "primary", backup: Endpoint(host: "127.0.0.1", port: link.port),
                                                 tls: workspace.tls(node: "primary", peer: "backup"), interval: .milliseconds(10))
        configuration.maximumInterval = .seconds(2)
        let primary = PrimaryReplicator(source: guest, configuration: configuration, logger: quietLogger)
        defer { primary.stop() }
        try primary.start()
        // 1 MB/s from here on: 256 KiB checkpoints every 10 ms would need 26 MB/s.
        link.setShape(LinkEmulator.Shape(oneWayDelay: .milliseconds(20), bytesPerSecond: 1_000_000))
        try primary.runCheckpoints(count: 25)
        let stats = primary.statistics
        print("adaptive interval: \(stats.checkpointsSent) checkpoints, \(stats.dirtyPages) pages, \(stats.wireBytes) wire bytes, \(String(describing: stats.interval))")
        let decision = try #require(stats.interval)
        #expect(decision.reason == .fitted, "\(decision)")
        // Each checkpoint (about 265 KB) must fit 80 % of 1 MB/s: about 330 ms.
        #expect(decision.interval >= .milliseconds(200) && decision.interval <= .seconds(1), "\(decision)")
        let budget = try #require(decision.budgetBytesPerSecond)
        #expect(budget > 500_000 && budget < 1_500_000, "the budget is the link's pace: \(decision)")
    }
}
