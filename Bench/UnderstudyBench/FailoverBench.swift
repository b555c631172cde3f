import Foundation
#if canImport(Glibc)
import Glibc
#endif
import UnderstudyAgent
import UnderstudyHarness
import UnderstudySystem
import UnderstudyTransport

/// Failover time (issue 5): from the primary's death (SIGKILL of its agent and QEMU) to the first
/// reply from the VM on the backup, for heartbeat timeouts of 100, 200 and 500 ms, with the
/// agents as an operator runs them (`understudy primary` / `understudy backup` processes, the
/// counter-service guest on a replicated disk, NIC behind the output gate, no witness with
/// `failover.without_witness`). The client, in its own namespace, opens a fresh connection every
/// few milliseconds after the kill, so that its own TCP retransmission timers do not count, and
/// asks for the service's status (`s`, served from memory): failover time is the first such reply.
/// Then it asks for an increment (`n`, appended to the disk with fsync before the reply): the
/// first durable write. The same two requests timed before the kill, on the protected primary,
/// are the baseline: what the service costs without a failover. Target: failover time ≤ timeout
/// + 150 ms.
///
/// Every other trial measures the failover a client of the VM sees instead: a `CounterClient`
/// keeps one TCP connection, asking back to back, and its first reply after the kill on that same
/// connection (the guest's service serves one connection at a time, so the two kinds of trial
/// cannot share a VM). Its breakdown, from the backup's log (`FailoverTimeline`): detection (kill
/// → the backup decides), fence, activation (→ the VM runs), and resumed VM → that reply.
struct FailoverBench {
    let trials: Int
    static let timeoutsMilliseconds = [100, 200, 500]
    static let targetSlackMilliseconds = 150.0

    /// Half of them with fresh connections, half on the client's own connection.
    init(quick: Bool) { trials = quick ? 4 : 10 }

    func run() throws -> [String: Any] {
        let temporary = try TemporaryDirectory("fobench")
        defer { temporary.remove() }
        let workspace = temporary.path
        _ = try CertificateAuthority.initialize(directory: "\(workspace)/certs", nodes: ["primary", "backup"])
        let network = try PairNetwork(tapCount: 2)
        defer { network.remove() }
        var rows: [[String: Any]] = []
        for timeout in Self.timeoutsMilliseconds {
            var times: [Double] = []
            var durable: [Double] = []
            var handshakes: [Double] = []
            var baselineStatus: [Double] = []
            var baselineDurable: [Double] = []
            var connection: [Double] = []
            var breakdowns: [FailoverTimeline] = []
            for trial in 1...trials {
                let sameConnection = trial % 2 == 0
                let result = try runTrial(timeoutMs: timeout, trial: trial, sameConnection: sameConnection, network: network, workspace: workspace)
                baselineStatus.append(result.baselineStatusMs)
                baselineDurable.append(result.baselineDurableMs)
                if let fresh = result.fresh {
                    times.append(fresh.failoverMs)
                    durable.append(fresh.durableMs)
                    handshakes.append(fresh.handshakeMs)
                    log(String(format: "timeout %d ms, trial %d: failover %.0f ms (first handshake %.0f ms), first durable write %.0f ms; "
                               + "before the kill: status %.0f ms, durable write %.0f ms", timeout, trial, fresh.failoverMs, fresh.handshakeMs,
                               fresh.durableMs, result.baselineStatusMs, result.baselineDurableMs))
                }
                if let own = result.connectionFailoverMs {
                    connection.append(own)
                    breakdowns.append(result.breakdown)
                    log(String(format: "timeout %d ms, trial %d: the client's own connection %.0f ms (detection %.0f, fence %.0f, activation %.0f, "
                               + "resumed VM → reply %.0f ms)", timeout, trial, own, result.breakdown.detectionMs ?? -1, result.breakdown.fenceMs ?? -1,
                               result.breakdown.activationMs ?? -1, result.breakdown.resumeToReplyMs ?? -1))
                }
            }
            times.sort()
            let target = Double(timeout) + Self.targetSlackMilliseconds
            let p50 = percentile(times, 0.5)
            let p99 = percentile(times, 0.99)
            connection.sort()
            func median(_ part: KeyPath<FailoverTimeline, Double?>) -> Double { percentile(breakdowns.compactMap { $0[keyPath: part] }.sorted(), 0.5) }
            rows.append([
                "heartbeat_timeout_ms": timeout, "trials": trials,
                "failover_ms_p50": p50, "failover_ms_p99": p99, "failover_ms_max": times.last ?? 0,
                "first_handshake_ms_p50": percentile(handshakes.sorted(), 0.5), "first_handshake_ms_p99": percentile(handshakes.sorted(), 0.99),
                "first_durable_write_ms_p50": percentile(durable.sorted(), 0.5), "first_durable_write_ms_p99": percentile(durable.sorted(), 0.99),
                "baseline_status_reply_ms_p50": percentile(baselineStatus.sorted(), 0.5),
                "baseline_durable_write_reply_ms_p50": percentile(baselineDurable.sorted(), 0.5),
                "client_connection_failover_ms_p50": percentile(connection, 0.5), "client_connection_failover_ms_p99": percentile(connection, 0.99),
                "client_connection_failover_ms_max": connection.last ?? 0,
                "detection_ms_p50": median(\.detectionMs), "fence_ms_p50": median(\.fenceMs), "activation_ms_p50": median(\.activationMs),
                "resume_to_reply_ms_p50": median(\.resumeToReplyMs),
                "target_ms": target, "target_met_p50": p50 <= target, "target_met_p99": p99 <= target,
                "client_connection_target_met_p50": percentile(connection, 0.5) <= target,
            ])
            log(String(format: "timeout %d ms: failover p50 %.0f ms, p99 %.0f ms; the client's own connection p50 %.0f ms, p99 %.0f ms (target %.0f ms)",
                       timeout, p50, p99, percentile(connection, 0.5), percentile(connection, 0.99), target))
        }
        return ["byTimeout": rows]
    }

    private struct TrialResult {
        /// Kill → first status reply, → first TCP handshake the guest completed, and → first
        /// reply to a durable write, on fresh connections (nil in a same-connection trial).
        var fresh: (failoverMs: Double, handshakeMs: Double, durableMs: Double)?
        /// The two requests' round trips (fresh connection each) on the protected primary.
        var baselineStatusMs: Double
        var baselineDurableMs: Double
        /// Kill → the next reply on the counter client's connection (nil in a fresh-connection
        /// trial), and where the time to the first reply went.
        var connectionFailoverMs: Double?
        var breakdown: FailoverTimeline
    }

    private func runTrial(timeoutMs: Int, trial: Int, sameConnection: Bool, network: PairNetwork, workspace: String) throws -> TrialResult {
        let directory = "\(workspace)/t\(timeoutMs)-\(trial)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: "\(directory)/certs", withDestinationPath: "\(workspace)/certs")
        let vm = "fb\(UUID().uuidString.prefix(6).lowercased())"
        let replica = "/dev/shm/understudy-fobench-\(vm)"
        var processes: [Process] = []
        defer {
            AgentPair.stop(processes, grace: .zero, directory: directory)
            try? FileManager.default.removeItem(atPath: replica)
            for file in (try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? [] where file.hasPrefix("understudy-\(vm)-") {
                try? FileManager.default.removeItem(atPath: "/dev/shm/\(file)")
            }
        }
        try HostCommand.run(["sh", "-c", "truncate -s 64M \(directory)/primary-disk.img && mkfs.ext4 -q -F \(directory)/primary-disk.img "
                        + "&& truncate -s 64M \(directory)/backup-disk.img"])
        let interval = max(1, timeoutMs / 5)
        let heartbeat = "[heartbeat]\ninterval_ms = \(interval)\nmissed = 5\nmin_timeout_ms = \(timeoutMs)\n"
        let port = LoopbackPorts.free()
        let configs = try AgentPair.writeConfigs(
            in: directory, port: port, vm: vm, guest: TestGuest.image, cmdline: "understudy.run=counter-service \(network.guestCommandLine)",
            replicaDirectory: replica, disks: ("\(directory)/primary-disk.img", "\(directory)/backup-disk.img"),
            taps: (network.taps[0], network.taps[1]), primaryExtra: heartbeat,
            backupExtra: "[failover]\nwithout_witness = true\n" + heartbeat)
        let understudy = productsDirectory().appendingPathComponent("understudy").path
        processes.append(try AgentPair.start(understudy, ["backup", "--config", configs.backup, "--log-level", "info"], log: "\(directory)/backup.log"))
        Thread.sleep(forTimeInterval: 0.3)
        let primary = try AgentPair.start(understudy, ["primary", "--config", configs.primary, "--log-level", "info"], log: "\(directory)/primary.log")
        processes.append(primary)
        // Protected and serving, then a couple of seconds of checkpoints.
        guard ServiceProbe.firstReply(network: network, request: .status, timeout: .seconds(120)) != nil else {
            throw BenchError("the guest service never answered; see \(directory)")
        }
        Thread.sleep(forTimeInterval: 1)
        let baselineStatus = ServiceProbe.roundTripMilliseconds(network: network, request: .status)
        let baselineDurable = ServiceProbe.roundTripMilliseconds(network: network, request: .durableWrite)
        let client = sameConnection ? CounterClient(network: network) : nil
        client?.start()
        defer { client?.stop() }
        if let client, !client.waitForReplies(20, timeout: .seconds(30)) { throw BenchError("the counter client got no replies; see \(directory)") }
        Thread.sleep(forTimeInterval: 1)
        let qemuPID = Int32((try? String(contentsOfFile: "\(directory)/run-primary/qemu.pid", encoding: .utf8)) ?? "") ?? 0
        let killed = ContinuousClock.now
        let killedAtWallClock = Date()
        kill(primary.processIdentifier, SIGKILL)
        kill(qemuPID, SIGKILL)
        // Replies that arrive until the agent is gone left its gate before the kill took effect.
        primary.waitUntilExit()
        let repliesBeforeKill = client?.history.count ?? 0
        let firstReply: Duration
        var result = TrialResult(baselineStatusMs: baselineStatus, baselineDurableMs: baselineDurable,
                                 breakdown: FailoverTimeline(backupLog: "", killedAt: killedAtWallClock, firstReplyAt: nil))
        if let client {
            guard client.waitForReplies(repliesBeforeKill + 1, timeout: .seconds(30)), client.reconnects == 0 else {
                throw BenchError("the counter client's connection did not survive the failover: \(client.errors); see \(directory)")
            }
            firstReply = client.history[repliesBeforeKill].at - killed
            result.connectionFailoverMs = firstReply.seconds * 1000
        } else {
            guard let answered = ServiceProbe.firstReply(network: network, request: .status, timeout: .seconds(30)),
                  let wrote = ServiceProbe.firstReply(network: network, request: .durableWrite, timeout: .seconds(30)) else {
                throw BenchError("the backup never answered after the kill; see \(directory)/backup.log")
            }
            firstReply = answered.replied - killed
            result.fresh = (firstReply.seconds * 1000, (answered.connected - killed).seconds * 1000, (wrote.replied - killed).seconds * 1000)
        }
        let backupLog = (try? String(contentsOfFile: "\(directory)/backup.log", encoding: .utf8)) ?? ""
        result.breakdown = FailoverTimeline(backupLog: backupLog, killedAt: killedAtWallClock,
                                            firstReplyAt: killedAtWallClock.addingTimeInterval(firstReply.seconds))
        return result
    }

    private func log(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }
}

private final class ProbeResult<T>: @unchecked Sendable { var value: T? }

/// Asks the counter service over fresh connections, every few milliseconds, from the client
/// namespace, until one answers.
enum ServiceProbe {
    enum Request: String {
        /// `s`: the counter and the disk file's state, from memory; changes nothing.
        case status = "s"
        /// `n`: an increment, appended to the disk file with fsync before the reply.
        case durableWrite = "n"

        func accepts(_ reply: String) -> Bool {
            switch self {
            case .status: reply.hasPrefix("S ")
            case .durableWrite: UInt64(reply) != nil
            }
        }
    }

    /// A new connection attempt every 10 ms, each kept open for up to a second: a guest that
    /// resumes answers the handshakes that reached it meanwhile, as it would a client's first SYN
    /// (abandoning each attempt after a few milliseconds would count the guest's catch-up against
    /// the failover). The first attempt that connects carries the request.
    /// When the guest first completed a TCP handshake, and when it first answered `request`.
    struct Answer {
        var connected: ContinuousClock.Instant
        var replied: ContinuousClock.Instant
    }

    static func firstReply(network: PairNetwork, request: Request, timeout: Duration) -> Answer? {
        inClientNamespace(network) {
            var connected: ContinuousClock.Instant?
            var pending: [(fd: Int32, started: ContinuousClock.Instant)] = []
            defer { for attempt in pending { close(attempt.fd) } }
            let deadline = ContinuousClock.now + timeout
            var nextAttempt = ContinuousClock.now
            while ContinuousClock.now < deadline {
                let now = ContinuousClock.now
                if now >= nextAttempt, let fd = startConnecting(to: network.guestAddress) {
                    pending.append((fd, now))
                    nextAttempt = now + .milliseconds(10)
                }
                pending.removeAll { attempt in
                    guard now - attempt.started > .seconds(1) else { return false }
                    close(attempt.fd)
                    return true
                }
                var pollers = pending.map { pollfd(fd: $0.fd, events: Int16(POLLOUT), revents: 0) }
                guard poll(&pollers, nfds_t(pollers.count), 2) > 0 else { continue }
                for poller in pollers where poller.revents != 0 {
                    pending.removeAll { $0.fd == poller.fd }
                    defer { close(poller.fd) }
                    let at = ContinuousClock.now
                    if exchange(on: poller.fd, request: request) { return Answer(connected: connected ?? at, replied: .now) }
                    // Handshake done, no reply (yet): the guest answers on the network already.
                    if connected == nil, isConnected(poller.fd) { connected = at }
                }
            }
            return nil
        }
    }

    /// The median of 9 round trips of `request`, each on a fresh connection, in milliseconds.
    static func roundTripMilliseconds(network: PairNetwork, request: Request) -> Double {
        inClientNamespace(network) {
            var times: [Double] = []
            for _ in 0..<9 {
                let start = ContinuousClock.now
                if attempt(address: network.guestAddress, request: request) { times.append((ContinuousClock.now - start).seconds * 1000) }
            }
            return times.sorted().dropFirst(times.count / 2).first ?? -1
        } ?? -1
    }

    /// Runs `body` on a thread of its own inside the client namespace (entering a namespace
    /// changes the calling thread only).
    private static func inClientNamespace<T>(_ network: PairNetwork, _ body: @escaping @Sendable () -> T?) -> T? {
        let box = ProbeResult<T>()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            defer { done.signal() }
            guard (try? network.enterClientNamespace()) != nil else { return }
            box.value = body()
        }
        thread.start()
        done.wait()
        return box.value
    }

    /// One connection: connect within 20 ms (the guest runs: a round trip is far less), the
    /// request, a reply within 2 s.
    private static func attempt(address: String, request: Request) -> Bool {
        guard let fd = startConnecting(to: address) else { return false }
        defer { close(fd) }
        var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        guard poll(&poller, 1, 20) == 1 else { return false }
        return exchange(on: fd, request: request)
    }

    /// A non-blocking connect to the service, under way; nil when it failed at once.
    private static func startConnecting(to address: String) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        var target = sockaddr_in()
        target.sin_family = sa_family_t(AF_INET)
        target.sin_port = UInt16(7000).bigEndian
        inet_pton(AF_INET, address, &target.sin_addr)
        let status = withUnsafePointer(to: &target) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard status == 0 || errno == EINPROGRESS else {
            close(fd)
            return nil
        }
        return fd
    }

    /// On a connect that finished (writable): whether it succeeded.
    private static func isConnected(_ fd: Int32) -> Bool {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 && error == 0
    }

    /// On a connect that finished (writable): true when it succeeded and `request` got its reply.
    private static func exchange(on fd: Int32, request: Request) -> Bool {
        guard isConnected(fd) else { return false }
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)
        var wait = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
        guard let reply = try? CounterClient.exchange(fd, request.rawValue) else { return false }
        return request.accepts(reply)
    }
}
