import Testing
import UnderstudyAgent

/// The protector's rules, with time passed in: grace period, policy, fence and switchover.
@Suite("protection state machine")
struct ProtectionStateMachineTests {
    static let start = ContinuousClock.now
    static func at(_ milliseconds: Int) -> ContinuousClock.Instant { start + .milliseconds(milliseconds) }

    static func machine(policy: FailoverConfiguration.Policy = .availability, asynchronous: Bool = false,
                        unprotected: Bool = false) -> ProtectionStateMachine {
        ProtectionStateMachine(failover: FailoverConfiguration(grace: .milliseconds(500), policy: policy, reconnect: .milliseconds(200)),
                               asynchronous: asynchronous, unprotected: unprotected, now: at(0))
    }

    /// A machine protecting through one session, whose backup was lost at `lostAt` ms.
    static func lost(policy: FailoverConfiguration.Policy = .availability, at lostAt: Int = 1000) -> ProtectionStateMachine {
        var machine = machine(policy: policy)
        _ = machine.sessionSyncing()
        machine.sessionStarted()
        machine.backupLost("connection reset", now: at(lostAt))
        return machine
    }

    @Test func aBootedVMHoldsItsOutputUntilTheFirstBackupOrTheGracePeriod() {
        var machine = Self.machine()
        #expect(machine.phase == .connecting)
        machine.sessionFailed("connection refused")
        #expect(machine.phase == .holding)
        #expect(machine.detail == "backup unreachable: connection refused")
        #expect(machine.graceElapsed(now: Self.at(499)) == nil)
        #expect(machine.graceElapsed(now: Self.at(500)) == .acquireFence)
    }

    @Test func anActivatedVMOrAnAsynchronousOneRunsUnprotectedWhileNoBackupAnswers() {
        var activated = Self.machine(unprotected: true)
        #expect(activated.phase == .unprotected)
        #expect(activated.lostAt == nil)
        _ = activated.sessionSyncing()
        activated.sessionFailed("connection refused")
        #expect(activated.phase == .unprotected)
        #expect(activated.graceElapsed(now: Self.at(10_000)) == nil)

        var asynchronous = Self.machine(asynchronous: true)
        #expect(asynchronous.sessionSyncing() == false, "asynchronous output is never held")
        asynchronous.sessionFailed("connection refused")
        #expect(asynchronous.phase == .unprotected)
    }

    @Test func aSynchronousSessionHoldsOutputFromItsSync() {
        var machine = Self.machine()
        #expect(machine.sessionSyncing() == true)
        #expect(machine.phase == .syncing)
        machine.sessionStarted()
        #expect(machine.phase == .protecting && machine.detail == nil && machine.lostAt == nil && machine.sessions == 1)
    }

    @Test func aFailedAttemptWhileHoldingKeepsTheGracePeriodRunning() {
        var machine = Self.lost()
        machine.sessionFailed("connection refused")
        #expect(machine.phase == .holding)
        #expect(machine.lostAt == Self.at(1000))
        #expect(machine.graceElapsed(now: Self.at(1500)) == .acquireFence)
    }

    @Test func aLostBackupHoldsOutputForTheGracePeriod() {
        var machine = Self.lost()
        #expect(machine.phase == .holding)
        #expect(machine.detail == "backup lost: connection reset")
        #expect(machine.graceElapsed(now: Self.at(1499)) == nil)
        #expect(machine.phase == .holding)
    }

    @Test func availabilityLetsOutputPassAfterTheGracePeriodOnlyWithTheFence() {
        var machine = Self.lost(policy: .availability)
        #expect(machine.graceElapsed(now: Self.at(1500)) == .acquireFence)
        #expect(machine.availabilityFence(held: false, holder: "b") == false)
        #expect(machine.phase == .holding)
        #expect(machine.detail == "backup lost; output held: the witness lease is not held (held by b)")
        #expect(machine.graceElapsed(now: Self.at(1700)) == .acquireFence, "tried again before the next attempt")
        #expect(machine.availabilityFence(held: false, holder: nil) == false)
        #expect(machine.detail?.hasSuffix("(unreachable)") == true)
        #expect(machine.availabilityFence(held: true, holder: nil) == true)
        #expect(machine.phase == .unprotected)
        #expect(machine.detail == "backup lost: running unprotected (policy availability)")
        #expect(machine.graceElapsed(now: Self.at(5000)) == nil, "the policy applies once")
    }

    @Test func safetyKeepsHoldingAfterTheGracePeriod() {
        var machine = Self.lost(policy: .safety)
        #expect(machine.graceElapsed(now: Self.at(1500)) == .keepHolding)
        #expect(machine.phase == .holding)
        #expect(machine.detail == "backup lost: output held until a backup acknowledges a checkpoint (policy safety)")
        #expect(machine.graceElapsed(now: Self.at(60_000)) == .keepHolding)
        #expect(machine.phase == .holding)
    }

    @Test func asynchronousModeDoesNotHoldWhenTheBackupIsLost() {
        var machine = Self.machine(asynchronous: true)
        _ = machine.sessionSyncing()
        machine.sessionStarted()
        machine.backupLost("timeout", now: Self.at(100))
        #expect(machine.phase == .unprotected)
        #expect(machine.graceElapsed(now: Self.at(10_000)) == nil)
    }

    @Test func aNewSessionProtectsAgainAndCountsSessions() {
        var machine = Self.lost()
        _ = machine.sessionSyncing()
        machine.sessionStarted()
        #expect(machine.phase == .protecting && machine.sessions == 2 && machine.lostAt == nil)
    }

    @Test func reconnectionComesNoLaterThanTheEndOfTheGracePeriod() {
        let machine = Self.lost(at: 1000)
        #expect(machine.reconnectDelay(now: Self.at(1000)) == .milliseconds(200))
        #expect(machine.reconnectDelay(now: Self.at(1400)) == .milliseconds(100))
        #expect(machine.reconnectDelay(now: Self.at(1600)) == .milliseconds(200), "after the grace period: the reconnect interval")
        #expect(Self.machine(unprotected: true).reconnectDelay(now: Self.at(0)) == .milliseconds(200))
    }

    @Test func acknowledgedOutputWaitsWhileTheFenceIsNotValid() {
        var machine = Self.machine()
        #expect(machine.acknowledged(through: 5, fenceValid: true) == .release(through: 5))
        #expect(machine.acknowledged(through: 6, fenceValid: false) == .withhold(first: true))
        #expect(machine.acknowledged(through: 7, fenceValid: false) == .withhold(first: false))
        #expect(machine.withheldRelease == 7)
        #expect(machine.acknowledged(through: 8, fenceValid: true) == .release(through: 8))
        #expect(machine.withheldRelease == nil)
    }

    @Test func aRegainedFenceReleasesWhatWaited() {
        var machine = Self.machine()
        _ = machine.sessionSyncing()
        machine.sessionStarted()
        #expect(!machine.wantsFence)
        machine.fenceLost("keep-alive failed")
        #expect(machine.wantsFence)
        _ = machine.acknowledged(through: 9, fenceValid: false)
        let regained = machine.fenceRegained()
        #expect(regained == ProtectionStateMachine.FenceRegainedAction(outputPasses: false, release: 9))
        #expect(!machine.wantsFence && machine.withheldRelease == nil)
        #expect(machine.end(stopReason: nil) == nil)
    }

    @Test func aRegainedFenceLetsOutputPassAgainWhenUnprotectedOrAsynchronous() {
        var unprotected = Self.machine(unprotected: true)
        unprotected.fenceLost("keep-alive failed")
        #expect(unprotected.fenceRegained() == ProtectionStateMachine.FenceRegainedAction(outputPasses: true, release: nil))
        var asynchronous = Self.machine(asynchronous: true)
        _ = asynchronous.sessionSyncing()
        asynchronous.sessionStarted()
        asynchronous.fenceLost("keep-alive failed")
        #expect(asynchronous.fenceRegained().outputPasses == true)
    }

    @Test func aFenceHeldElsewhereEndsThisCopy() {
        var machine = Self.machine()
        _ = machine.sessionSyncing()
        machine.sessionStarted()
        machine.fenceLost("lease expired")
        #expect(!machine.checkpointsShouldStop)
        machine.fenceHeld(by: "b")
        #expect(machine.checkpointsShouldStop, "the session returns so that the copy stops")
        #expect(!machine.wantsFence)
        #expect(machine.end(stopReason: nil) == .fenced("b is the active copy (lease expired)"))
        #expect(machine.phase == .fenced)
        #expect(machine.detail == "b is the active copy: lease expired")
    }

    @Test func aNewerWitnessTermEndsThisCopyEvenWithTheKeyFree() {
        var machine = Self.lost()
        machine.fenceLost("lease expired")
        #expect(machine.wantsFence)
        #expect(machine.acknowledged(through: 5, fenceValid: false) == .withhold(first: true))
        let reason = "b claimed the VM in witness term 2 after the term 1 (a) this node held last: this copy of the VM must not resume"
        machine.fenceSuperseded(reason)
        #expect(!machine.wantsFence, "never tried again: terms only grow")
        #expect(machine.checkpointsShouldStop)
        #expect(machine.end(stopReason: nil) == .fenced(reason))
        #expect(machine.phase == .fenced)
        #expect(machine.detail == reason)
    }

    @Test func aStopEndsProtectionFirst() {
        var machine = Self.machine()
        machine.fenceLost("lease expired")
        machine.fenceHeld(by: "b")
        #expect(machine.end(stopReason: "terminated") == .stopped)
        #expect(machine.phase == .stopped && machine.detail == "terminated")
    }

    @Test func noBackupConfiguredRunsUnprotected() {
        var machine = Self.machine()
        machine.noBackupConfigured()
        #expect(machine.phase == .unprotected)
        #expect(machine.detail == "not protected: the configuration names no backup (peer.address)")
    }

    @Test func aSwitchoverNeedsABackupInSyncAndANodeThatCanBecomeTheBackup() {
        var machine = Self.machine()
        #expect(machine.switchoverRequested(becomingBackupError: nil) == "the VM is connecting, not protecting: a switchover needs a backup in sync")
        _ = machine.sessionSyncing()
        machine.sessionStarted()
        #expect(machine.switchoverRequested(becomingBackupError: "backup.listen is missing")
                == "this node could not become the backup: backup.listen is missing")
        #expect(!machine.switchoverPending)
        #expect(machine.sessionEnded() == .close)
        #expect(machine.switchoverRequested(becomingBackupError: nil) == nil)
        #expect(machine.checkpointsShouldStop)
        #expect(machine.switchoverRequested(becomingBackupError: nil) == "a switchover is already under way")
        #expect(machine.sessionEnded() == .handOver)
    }

    @Test func aSwitchoverEndsOnceTheFinalCheckpointIsAcknowledged() {
        var machine = Self.machine()
        _ = machine.sessionSyncing()
        machine.sessionStarted()
        _ = machine.switchoverRequested(becomingBackupError: nil)
        machine.finalCheckpointStarted()
        #expect(machine.phase == .switchingOver && machine.detail == "final checkpoint")
        #expect(machine.switchoverRequested(becomingBackupError: nil) != nil)
        #expect(machine.switchedOver(at: 42) == ControlReply(ok: true, message: "switched over at checkpoint 42: the peer is now the primary"))
        #expect(machine.phase == .switchedOver && machine.detail == "the backup took over at checkpoint 42")
    }

    @Test func aFailedSwitchoverKeepsTheVMHereHoldingItsOutput() {
        var machine = Self.machine(policy: .availability)
        _ = machine.sessionSyncing()
        machine.sessionStarted()
        _ = machine.switchoverRequested(becomingBackupError: nil)
        machine.finalCheckpointStarted()
        let reply = machine.finalCheckpointFailed("no acknowledgement within 30 s", now: Self.at(2000))
        #expect(reply == ControlReply(ok: false, message: "switchover failed, the VM keeps running here: no acknowledgement within 30 s"))
        #expect(machine.phase == .holding && !machine.switchoverPending && machine.lostAt == Self.at(2000))
        #expect(!machine.checkpointsShouldStop)
        #expect(machine.graceElapsed(now: Self.at(2500)) == .acquireFence, "then the grace period and policy as for a lost backup")
    }
}
