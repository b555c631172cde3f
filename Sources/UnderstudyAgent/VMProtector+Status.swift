import UnderstudyProtocol

extension VMProtector {
    /// The node's status while this VM runs here.
    public func status(vm: String) -> AgentStatus {
        let (machine, replicator) = state.withLock { ($0.machine, $0.replicator) }
        var status = PrimaryStatus(vm: vm, state: machine.phase, detail: machine.detail)
        if let replicator { status.add(statistics: replicator.statistics) }
        status.dirtyTracking = "\(source.trackingMethod)"
        status.stagingBytes = source.stagingBytes
        status.sessions = machine.sessions
        status.fence = fence.kind
        status.witnessTerm = fence.term?.number
        if primaryConfiguration != nil || followed.withLock({ $0?.address != nil }) {
            status.protectionMode = configuration.replication.mode.rawValue
            if machine.asynchronous { status.recoveryPointObjectiveMilliseconds = configuration.replication.recoveryPointObjective.seconds * 1000 }
            status.catchUpJournalBytes = backlog?.journalBytes
        }
        status.activatedFromEpoch = activatedFromEpoch
        switch datagrams.withLock({ $0.choice }) {
        case .path(let target)?: status.heartbeatDatagrams = "to \(target.peer) (\(target.peerName))"
        case .none(let reason?)?: status.heartbeatDatagrams = "none: \(reason)"
        case .none(nil)?, nil: break
        }
        status.add(devices: devices)
        return .primary(status)
    }
}
