import UnderstudyProtocol

extension VMProtector {
    /// Why this node could not serve as the backup after a switchover (nil: it can).
    private var becomingBackupError: String? {
        guard case .failure(let error) = Result(catching: { try configuration.backup() }) else { return nil }
        return "\(error)"
    }

    /// Asks the loop for a planned switchover and waits for its outcome (the control thread).
    public func requestSwitchover(timeout: Duration = .seconds(60)) -> ControlReply {
        let request = ControlRequest()
        let becomingBackupError = becomingBackupError
        let refused: String? = state.withLock {
            let refused = $0.machine.switchoverRequested(becomingBackupError: becomingBackupError)
            if refused == nil { $0.switchover = request }
            return refused
        }
        if let refused { return ControlReply(ok: false, message: refused) }
        poke()
        return request.wait(timeout: timeout) ?? ControlReply(ok: false, message: "no outcome within \(timeout); see the agent's log")
    }

    /// The final checkpoint with the guest paused, acknowledged, then GOODBYE(switchover): the
    /// backup activates from exactly the state the guest stopped in, and nothing it sent is lost
    /// (all output was released by that last acknowledgement). On failure the guest resumes here.
    func handOver(_ replicator: PrimaryReplicator) -> Outcome? {
        state.withLock { $0.machine.finalCheckpointStarted() }
        logger.notice("switchover: final checkpoint with the guest paused")
        do {
            try replicator.finalCheckpoint(timeout: .seconds(30))
        } catch {
            try? source.resume()
            let (request, reply) = state.withLock { ($0.switchover.take(), $0.machine.finalCheckpointFailed("\(error)", now: .now)) }
            request?.finish(reply)
            replicator.abandon()
            state.withLock { $0.replicator = nil }
            return nil
        }
        let epoch = replicator.lastCapturedEpoch
        // The last frames released must reach the LAN before the backup's VM announces itself
        // there, or switches would learn this node's port again for the VM's address.
        if !devices.waitUntilOutputSent(timeout: .seconds(2)) { logger.warning("switchover: released output still queued after 2 s") }
        fence.release()
        replicator.stop(SessionClose(code: .switchover, message: "switchover at checkpoint \(epoch)"))
        let (request, reply) = state.withLock { ($0.switchover.take(), $0.machine.switchedOver(at: epoch)) }
        logger.notice("switchover: the backup takes over", metadata: ["epoch": "\(epoch)"])
        request?.finish(reply)
        return .switchedOver
    }
}
