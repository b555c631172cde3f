import CUnderstudyShims
import Foundation
import Logging
import Synchronization
import UnderstudySystem
#if canImport(Glibc)
import Glibc
#endif

/// What the gate's threads share. Kept apart from `OutputGate` so that the threads do not keep
/// the gate alive: dropping the gate stops them.
final class GateCore: @unchecked Sendable {
    private struct Link {
        var connection: GuestConnection?
        var stopping = false
    }

    let logger: Logger
    private let listener: Int32
    private let tap: Int32
    private let wake: (read: Int32, write: Int32)
    private let gate: Mutex<OutputGateStateMachine>
    /// Whether frames passing at once deserve the periodic warning (output commit switched off).
    private let warnUnbuffered: Bool
    /// Whether this node may put frames on the network at all (see `OutputGate.init`).
    private let mayTransmit: @Sendable () -> Bool
    private let transmit: TransmitQueue
    private let link = Mutex(Link())
    /// Everything in `OutputGate.Statistics` but `buffer`, which lives in the state machine.
    private let counters = Mutex(OutputGate.Statistics())
    /// Mirrors whether the open epoch holds frames; set and cleared under the gate's lock, so
    /// that it never disagrees with the seals.
    private let outputWaiting: WaitableFlag?
    /// Sees each frame written to the guest, with the epoch open then (see `OutputGate.observeGuestInput`).
    private let inputObserver = Mutex<(@Sendable (UInt64, [UInt8]) -> Void)?>(nil)
    /// Held for each frame written to QEMU: the TAP's and replayed frames must not interleave.
    private let guestWrites = Mutex(())
    /// The firewall both directions pass through; apart from the gate's lock, so that a frame to
    /// the guest never waits for a seal or a release.
    private let policy: Mutex<GatePolicyStateMachine>
    /// True while the policy lets everything through (no rules, default allow, as without a
    /// policy): frames then skip it, lock and clock included, so a gate without rules pays nothing.
    private let passAll: Atomic<Bool>

    init(listener: Int32, tap: Int32, wake: (read: Int32, write: Int32), bufferLimit: Int, buffering: Bool, warnUnbuffered: Bool,
         mayTransmit: @escaping @Sendable () -> Bool, outputWaiting: WaitableFlag?, policy: GatePolicy, logger: Logger) {
        self.policy = Mutex(GatePolicyStateMachine(policy: policy, now: .now))
        passAll = Atomic(policy.allowsEverything)
        self.outputWaiting = outputWaiting
        self.warnUnbuffered = warnUnbuffered
        self.mayTransmit = mayTransmit
        self.listener = listener
        self.tap = tap
        self.wake = wake
        self.logger = logger
        gate = Mutex(OutputGateStateMachine(bufferLimit: bufferLimit, buffering: buffering))
        transmit = TransmitQueue(limit: bufferLimit)
    }

    var statistics: OutputGate.Statistics {
        var statistics = counters.withLock { $0 }
        statistics.buffer = gate.withLock { $0.statistics }
        return statistics
    }

    // MARK: - Epochs

    func seal(epoch: UInt64) {
        let action = gate.withLock { gate in
            defer { outputWaiting?.set(gate.holdsOpenFrames) }
            return gate.seal(epoch: epoch)
        }
        if case .rejected(let last) = action {
            logger.error("seal of epoch \(epoch) ignored: epoch \(last) is already sealed (epochs must increase); its frames wait for a later epoch")
        }
    }

    func release(through epoch: UInt64) {
        // Handing the frames to the queue under the gate's lock keeps releases from two threads
        // in epoch order; the queue never waits.
        let (action, dropped) = gate.withLock { gate -> (OutputGateStateMachine.AcknowledgeAction, (frames: Int, bytes: Int)) in
            let action = gate.acknowledged(through: epoch)
            switch action {
            case .send(let frames), .unsealed(let frames, _): return (action, transmit.enqueue(frames))
            case .alreadyReleased: return (action, (0, 0))
            }
        }
        switch action {
        case .send: break
        case .alreadyReleased(let last):
            logger.debug("acknowledgement of epoch \(epoch) ignored: epochs through \(last) were released already")
        case .unsealed(_, let lastSealed):
            logger.error("acknowledgement of epoch \(epoch), which was never sealed (last sealed: \(lastSealed.map(String.init) ?? "none")); released the sealed epochs only")
        }
        countSendDrops(dropped)
    }

    /// Switches between output commit and passing at once; see `OutputGate.setMode`.
    func setHolding(_ holding: Bool) {
        let dropped = gate.withLock { gate -> (frames: Int, bytes: Int) in
            defer { outputWaiting?.set(gate.holdsOpenFrames) }
            if holding {
                gate.startHolding()
                return (0, 0)
            }
            return transmit.enqueue(gate.stopHolding())
        }
        countSendDrops(dropped)
    }

    // MARK: - Guest → gate

    /// The `gate-guest` thread: one QEMU connection at a time, until stopped.
    func acceptAndRead() {
        var warnings = Warnings()
        while waitReadable(listener) {
            let fd = us_accept_cloexec(listener, nil, nil)
            guard fd >= 0 else {
                let code = errno
                if code != EINTR && code != ECONNABORTED {
                    logger.error("accepting QEMU's connection failed: \(String(cString: strerror(code)))")
                    // Back off so that a persistent failure (EMFILE) does not spin; still wakes for stop.
                    if !waitReadable(-1, timeoutMilliseconds: 100) { return }
                }
                continue
            }
            let connection = GuestConnection(fd: fd)
            let attached = link.withLock { link in
                guard !link.stopping else { return false }
                link.connection = connection
                return true
            }
            guard attached else { return }
            counters.withLock {
                $0.guestConnections += 1
                $0.guestConnected = true
            }
            logger.info("QEMU connected to the output gate")
            let end = serve(connection, warnings: &warnings)
            link.withLock { $0.connection = nil }
            counters.withLock { $0.guestConnected = false }
            connection.shutdown()
            switch end {
            case .malformed(let length):
                counters.withLock { $0.malformedConnections += 1 }
                let error = NetworkError.malformedFrame("length \(length), allowed 1 to \(GuestSocket.maxFrameLength)")
                logger.error("\(error); closed QEMU's connection. QEMU 7.2 does not reconnect: the guest NIC stays unplugged until QEMU restarts")
            case .failed(let code):
                logger.error("reading from QEMU failed: \(String(cString: strerror(code))); closed its connection")
            case .closed, .frame:
                logger.info("QEMU's connection to the output gate closed")
            }
        }
    }

    /// Reads frames until the connection ends; returns how it ended.
    private func serve(_ connection: GuestConnection, warnings: inout Warnings) -> GuestFrameReader.Event {
        var reader = GuestFrameReader()
        while true {
            let event = reader.next(from: connection.fd)
            guard case .frame(let frame) = event else { return event }
            // Before the gate: a frame the policy drops is never held, so never output of an epoch.
            guard frame.withUnsafeBytes({ admit($0, .fromGuest) }) else { continue }
            let (action, dropped) = gate.withLock { gate -> (OutputGateStateMachine.GuestFrameAction, (frames: Int, bytes: Int)) in
                let action = gate.guestFrame(frame)
                if action == .hold { outputWaiting?.set(true) }
                return (action, action == .send ? transmit.enqueue([frame]) : (0, 0))
            }
            switch action {
            case .hold: break
            case .send:
                countSendDrops(dropped)
                if warnUnbuffered, warnings.unbuffered.due() {
                    let passed = gate.withLock { $0.statistics.passedFrames }
                    logger.warning("OUTPUT BUFFERING IS OFF: \(passed) guest frames have left without output commit")
                }
            case .drop:
                if warnings.bufferFull.due() {
                    let dropped = gate.withLock { $0.statistics.droppedFrames }
                    logger.warning("output buffer full: dropping guest frames until the backup acknowledges (\(dropped) dropped so far); acknowledgements are slow or the limit is too small")
                }
            }
        }
    }

    // MARK: - Gate → TAP

    func waitUntilSent(timeout: Duration) -> Bool { transmit.waitUntilSent(timeout: timeout) }

    /// Queues a frame of the agent's own (not the guest's) for the TAP.
    func transmitNow(_ frame: [UInt8]) {
        countSendDrops(transmit.enqueue([frame]))
    }

    /// The `gate-send` thread: writes released (or passed) frames to the TAP.
    func sendToTAP() {
        var failing = false
        var fenced = Warnings.Throttle(interval: .seconds(10), last: nil)
        while let frame = transmit.next() {
            // Asked per frame, as late as possible: frames queued before this node stalled and
            // lost its lease must not leave after another copy became active.
            guard mayTransmit() else {
                counters.withLock {
                    $0.fencedFrames += 1
                    $0.fencedBytes += UInt64(frame.count)
                }
                if fenced.due() {
                    logger.error("dropping guest output: this node cannot prove it is the active copy of the VM (witness lease not valid)")
                }
                continue
            }
            // Safe: write reads exactly `count` bytes of the array's storage during the call.
            let n = frame.withUnsafeBytes { write(tap, $0.baseAddress!, $0.count) }
            if n == frame.count {
                failing = false
                counters.withLock {
                    $0.sentFrames += 1
                    $0.sentBytes += UInt64(frame.count)
                }
            } else {
                // The frame is lost, as on a congested wire; the guest's protocols recover.
                let code = n < 0 ? errno : EIO
                countSendDrops((1, frame.count))
                if !failing {
                    logger.warning("writing to the TAP failed: \(String(cString: strerror(code))); dropping frames until it works again")
                }
                failing = true
            }
        }
    }

    private func countSendDrops(_ dropped: (frames: Int, bytes: Int)) {
        guard dropped.frames > 0 else { return }
        counters.withLock {
            $0.sendDroppedFrames += UInt64(dropped.frames)
            $0.sendDroppedBytes += UInt64(dropped.bytes)
        }
    }

    // MARK: - TAP → guest

    /// The `gate-tap` thread: frames to the guest pass at once (they carry no guest state).
    func forwardToGuest() {
        var buffer = [UInt8](repeating: 0, count: 4 + GuestSocket.maxFrameLength)
        var failing = false
        while waitReadable(tap) {
            // Safe: read writes at most `count - 4` bytes after the 4-byte prefix, inside the buffer.
            let n = buffer.withUnsafeMutableBytes { read(tap, $0.baseAddress! + 4, $0.count - 4) }
            guard n > 0 else {
                let code = n < 0 ? errno : 0
                if code == EINTR || code == EAGAIN { continue }
                // The TAP device went away (EBADFD): nothing more will come from it.
                logger.error("reading from the TAP failed: \(code == 0 ? "end of file" : String(cString: strerror(code))); no more frames reach the guest")
                return
            }
            // Safe: the range is the `n` bytes just read, inside the buffer.
            guard buffer.withUnsafeBytes({ admit(UnsafeRawBufferPointer(rebasing: $0[4..<(4 + n)]), .toGuest) }) else { continue }
            let length = UInt32(n)
            buffer[0] = UInt8(length >> 24)
            buffer[1] = UInt8(length >> 16 & 0xFF)
            buffer[2] = UInt8(length >> 8 & 0xFF)
            buffer[3] = UInt8(length & 0xFF)
            let connection = link.withLock { $0.connection }
            // Safe: the pointer covers the prefix and the `n` bytes read, all inside the buffer.
            let failure: Int32? = connection.flatMap { connection in
                buffer.withUnsafeBytes { framed in
                    guestWrites.withLock { _ in GuestSocket.writeAll(connection.fd, UnsafeRawBufferPointer(rebasing: framed[0..<(4 + n)])) }
                }
            }
            if connection != nil && failure == nil {
                failing = false
                counters.withLock {
                    $0.framesToGuest += 1
                    $0.bytesToGuest += UInt64(n)
                }
                if let observe = inputObserver.withLock({ $0 }) {
                    // A frame written after seal(n) reaches the guest after pause n: it belongs to n + 1.
                    let open = gate.withLock { ($0.statistics.lastSealedEpoch ?? 0) + 1 }
                    observe(open, Array(buffer[4..<(4 + n)]))
                }
                continue
            }
            counters.withLock { $0.framesToGuestDropped += 1 }
            if let connection {
                // A frame may have been cut in half: the stream is no longer framed, end it.
                logger.error("writing to QEMU failed: \(String(cString: strerror(failure ?? EIO))); closing its connection")
                connection.shutdown()
            } else if !failing {
                logger.debug("no QEMU connected: dropping frames for the guest")
                failing = true
            }
        }
    }

    // MARK: - Policy

    var policyStatistics: GatePolicyStatistics { policy.withLock { $0.statistics } }

    func setPolicy(_ replacement: GatePolicy) {
        policy.withLock {
            $0.replace(with: replacement, now: .now)
            passAll.store(replacement.allowsEverything, ordering: .relaxed)
        }
    }

    /// Whether the policy lets `frame` through; counts it, and logs a dropped frame when due.
    private func admit(_ frame: UnsafeRawBufferPointer, _ direction: FrameDirection) -> Bool {
        if passAll.load(ordering: .relaxed) { return true }
        let summary = FrameSummary(parsing: frame)
        let (verdict, decider) = policy.withLock { machine -> (GatePolicyStateMachine.Verdict, String?) in
            let verdict = machine.filter(summary, length: frame.count, direction, now: .now)
            guard verdict.report != nil else { return (verdict, nil) }
            guard let index = verdict.rule else { return (verdict, "the default action (deny)") }
            let rule = machine.policy.rules[index]
            return (verdict, "rule \(index) (\(rule.name.map { "\($0): " } ?? "")\(rule))")
        }
        if let report = verdict.report, let decider {
            let more = report.suppressed > 0 ? "; \(report.suppressed) more dropped by it since its last report" : ""
            logger.notice("gate policy dropped \(summary) \(direction == .fromGuest ? "from" : "to") the guest by \(decider)\(more)")
        }
        return verdict.allowed
    }

    func observeGuestInput(_ observer: (@Sendable (UInt64, [UInt8]) -> Void)?) {
        inputObserver.withLock { $0 = observer }
    }

    /// Writes `frames` to QEMU between the TAP's frames; returns how many were written (none
    /// without a QEMU connection).
    /// Not filtered: they are the input the old primary's guest received, which its policy passed
    /// already; the replay must give this guest the same.
    func deliverToGuest(_ frames: [[UInt8]]) -> Int {
        guard let connection = link.withLock({ $0.connection }) else { return 0 }
        var written = 0
        for frame in frames where frame.count <= GuestSocket.maxFrameLength {
            let length = UInt32(frame.count)
            let framed = [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)] + frame
            let failure = framed.withUnsafeBytes { bytes in guestWrites.withLock { _ in GuestSocket.writeAll(connection.fd, bytes) } }
            guard failure == nil else { break }
            written += 1
            counters.withLock {
                $0.framesToGuest += 1
                $0.bytesToGuest += UInt64(frame.count)
            }
        }
        return written
    }

    // MARK: - Stopping

    /// Wakes every thread: the byte in the wake pipe ends their polls, the shut-down connection
    /// ends a read or write to QEMU, the closed queue ends the sender.
    func beginStopping() {
        let connection = link.withLock { link in
            link.stopping = true
            return link.connection
        }
        connection?.shutdown()
        var byte: UInt8 = 1
        _ = Glibc.write(wake.write, &byte, 1)
        transmit.close()
    }

    /// After the threads were joined.
    func closeDescriptors() {
        close(listener)
        close(tap)
        close(wake.read)
        close(wake.write)
    }

    /// Waits until `fd` is readable. False when the gate is stopping. With `fd` -1, only waits
    /// for the timeout (or stopping).
    private func waitReadable(_ fd: Int32, timeoutMilliseconds: Int32 = -1) -> Bool {
        var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0)]
        while true {
            let ready = poll(&fds, 2, timeoutMilliseconds)
            if ready < 0 && errno == EINTR { continue }
            return ready >= 0 && fds[1].revents == 0
        }
    }
}

extension GateCore {
    /// Warnings that would repeat with every frame, limited to one per interval.
    private struct Warnings {
        struct Throttle {
            let interval: Duration
            /// When it was last due; nil makes the first call due.
            var last: ContinuousClock.Instant?

            /// True at the first call and then at most once per interval.
            mutating func due() -> Bool {
                let now = ContinuousClock.now
                if let last, now - last < interval { return false }
                last = now
                return true
            }
        }

        /// The gate warned at start already: the next warning is due after an interval.
        var unbuffered = Throttle(interval: .seconds(10), last: .now)
        var bufferFull = Throttle(interval: .seconds(10), last: nil)
    }
}
