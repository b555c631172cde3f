import Testing
import UnderstudyAgent
import UnderstudyQEMU

/// The agent's stop and its typed reason.
@Suite struct StopSignalTests {
    @Test func theFirstReasonWins() {
        let stop = StopSignal(signals: [])
        #expect(!stop.isSet && stop.reason == nil)
        #expect(!stop.wait(timeout: .zero))
        stop.trigger(.qemuExited(.exited(status: 1, log: "")))
        stop.trigger(.requested(nil))
        #expect(stop.isSet)
        #expect(stop.reason == .qemuExited(.exited(status: 1, log: "")))
        #expect(stop.wait() == .qemuExited(.exited(status: 1, log: "")))
    }

    @Test func onlyTheOperatorsStopIsRequested() {
        #expect(StopReason.requested(nil).isRequested)
        #expect(StopReason.requested(.sigint).isRequested)
        #expect(!StopReason.qemuExited(.exited(status: 1, log: "")).isRequested)
    }

    @Test func describesTheReason() {
        #expect("\(StopReason.requested(.sigint))" == "interrupted")
        #expect("\(StopReason.requested(.sigterm))" == "terminated")
        #expect("\(StopReason.requested(nil))" == "terminated")
        #expect("\(StopReason.requested(.sigusr1))" == "stopped by SIGUSR1")
        #expect("\(StopReason.qemuExited(.exited(status: 1, log: "no kernel")))" == "QEMU exited with status 1: no kernel")
    }
}
