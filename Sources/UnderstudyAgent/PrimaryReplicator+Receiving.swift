import UnderstudyProtocol
import UnderstudySystem
import UnderstudyTransport

extension PrimaryReplicator {
    /// The `primary-recv` thread: acknowledgements (released to the gate at once), heartbeats
    /// and the backup's end of the session.
    /// - Parameter echoHeartbeats: the session agreed heartbeat-echo: answer the backup's heartbeats.
    func receiveLoop(_ connection: FrameConnection, sender: FrameSender, echoHeartbeats: Bool) {
        // Real-time (it does little per frame): an acknowledgement or heartbeat read late on a
        // busy host holds output, or reads as a lost backup.
        RealtimePriority.raiseCurrentThread()
        while true {
            let frame: Frame
            do {
                frame = try connection.receive()
            } catch {
                session.fail(error)
                return
            }
            let now = ContinuousClock.now
            liveness.withLock { _ = $0?.heard(on: .replication, at: now) }
            // Nil once this side has ended the session (heartbeat timeout, a failed capture): what
            // still arrives before the connection closes no longer matters.
            let action = session.withLock { $0.failure == nil ? $0.session.received(frame) : nil }
            guard let action else { return }
            switch action {
            case .release(let epoch):
                release(through: epoch, session.acknowledge(through: epoch, at: .now))
            case .heartbeat(let beat):
                // Never waits: an echo that finds the queue full is dropped (one sample fewer).
                if echoHeartbeats { _ = sender.offer(Message.heartbeatEcho(beat).frame) }
            case .heartbeatEcho(let beat):
                configuration.metrics?.heartbeatEchoed(beat)
            case .peerClosed(let close):
                logger.warning("backup ended the session", metadata: ["code": "\(close.code)", "reason": "\(close.message)"])
                session.fail(ProtocolError.rejected(code: close.code, message: close.message))
                connection.close()
                return
            case .close(let error):
                logger.error("backup broke the protocol", metadata: ["error": "\(error)"])
                try? connection.send(.goodbye(SessionClose(code: error.rejectCode, message: error.description)))
                session.fail(error)
                connection.close()
                return
            case .startSync:
                session.fail(ProtocolError.unexpected("second WELCOME"))
                connection.close()
                return
            }
        }
    }

    /// Carries out an acknowledgement through `epoch`: metrics, the backlog, then output of the
    /// epochs up to it may leave.
    private func release(through epoch: UInt64, _ acknowledgement: PrimarySession.Acknowledgement) {
        if let metrics = configuration.metrics {
            for latency in acknowledgement.latencies { metrics.acknowledged(latency: latency) }
            metrics.committed(epoch: epoch, unacknowledged: acknowledgement.unacknowledged)
            if let peak = acknowledgement.lagPeak { metrics.replicaLagged(peak: peak) }
        }
        configuration.backlog?.acknowledged(through: epoch)
        onRelease(epoch)
        if let event = acknowledgement.recoveryPoint { log(event) }
        if let duration = acknowledgement.caughtUp {
            logger.notice("the backup caught up", metadata: ["epoch": "\(epoch)", "seconds": "\(duration)"])
        }
    }

    /// The `primary-heartbeat` thread: sends a heartbeat whenever nothing was queued for an
    /// interval, and ends the session when nothing at all came from the backup for the timeout
    /// (a hung or unreachable backup keeps the connection open but silent), or when checkpoints
    /// are in flight and nothing progressed for the acknowledgement timeout (a backup that
    /// heartbeats but no longer applies: a hung disk, a long msync).
    func heartbeatLoop(_ configuration: HeartbeatMonitor.Configuration, connection: FrameConnection, sender: FrameSender) {
        liveness.withLock { $0 = HeartbeatMonitor(configuration: configuration, now: .now) }
        var progress = self.configuration.acknowledgementTimeout.map { AcknowledgementProgressMonitor(timeout: $0, now: .now) }
        var sequence: UInt64 = 0
        while session.waitForFailure(timeout: configuration.interval / 4) == nil {
            let now = ContinuousClock.now
            let decision = liveness.withLock { $0!.poll(now: now) }
            if let silence = decision.peerLost {
                let error = TransportError.timedOut("the backup sent nothing for \(silence.wholeMilliseconds) ms (heartbeat timeout \(configuration.timeout.wholeMilliseconds) ms)")
                logger.error("backup lost", metadata: ["silent-ms": "\(silence.wholeMilliseconds)"])
                session.fail(error)
                connection.close()
                return
            }
            let observation = session.withLock {
                AcknowledgementProgressMonitor.Observation(inFlight: $0.session.unacknowledged, acknowledgedThrough: $0.session.lastAcknowledgedEpoch,
                                                           bytesWritten: sender.written.bytes, framesQueued: sender.queued)
            }
            if let stalled = progress?.poll(observation, now: now) {
                let error = TransportError.timedOut("the backup acknowledged nothing for \(stalled.wholeMilliseconds) ms with \(observation.inFlight) checkpoints in flight (failover.ack_timeout_ms)")
                logger.error("backup lost: it stopped acknowledging", metadata: ["stalled-ms": "\(stalled.wholeMilliseconds)", "in-flight": "\(observation.inFlight)"])
                session.fail(error)
                connection.close()
                return
            }
            if decision.sendHeartbeat {
                sequence += 1
                let beat = Message.heartbeat(.stamped(sequence: sequence))
                if sender.offer(beat.frame) { liveness.withLock { $0!.sent(at: now) } }
            }
        }
    }
}
