import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import UnderstudyAgent
import UnderstudyNetwork
import UnderstudyHarness
import UnderstudyProtocol
import UnderstudySystem
import UnderstudyTestTags
import UnderstudyTransport
import Synchronization

/// Sends `request` to 127.0.0.1:`port` as it is and returns everything the server sent back
/// until it closed the connection.
func httpExchange(port: UInt16, _ request: [UInt8], closeWriting: Bool = false) throws -> String {
    let fd = try connectLoopback(port: port)
    defer { close(fd) }
    var timeout = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    // Safe: the array's storage is valid for the call and `count` is its length.
    _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    if closeWriting { shutdown(fd, Int32(SHUT_WR)) }
    var reply: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        // Safe: recv writes at most `chunk.count` bytes into the array's own storage.
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        reply += chunk[..<n]
    }
    return String(decoding: reply, as: UTF8.self)
}

/// A blocking TCP connection to 127.0.0.1:`port`; the caller closes it.
func connectLoopback(port: UInt16) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TransportError.system(operation: "socket", errno: errno) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    // Safe: the pointer is rebound only for the call and covers exactly one sockaddr_in.
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else {
        let error = errno
        close(fd)
        throw TransportError.connectFailed(address: "127.0.0.1:\(port)", errno: error)
    }
    return fd
}

/// GET /metrics from 127.0.0.1:`port`: the body of a 200 reply, or nil.
func scrape(port: UInt16) throws -> String? {
    let reply = try httpExchange(port: port, Array("GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n".utf8))
    guard reply.hasPrefix("HTTP/1.1 200 "), let split = reply.range(of: "\r\n\r\n") else { return nil }
    return String(reply[split.upperBound...])
}

/// The value of the sample `series` (name and labels exactly as exposed) in exposition `text`.
func sample(_ text: String, _ series: String) -> Double? {
    for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
        return Double(line.dropFirst(series.count + 1))
    }
    return nil
}

@Suite("Metrics endpoint")
struct MetricsServerTests {
    @Test func getMetricsReturnsTheExpositionText() throws {
        let metrics = AgentMetrics(vm: "web-1")
        metrics.checkpointCaptured(.output, pause: .microseconds(1500), dirtyPages: 300, unacknowledged: 1)
        metrics.checkpointEncoded(rawBytes: 300 * 4096, wireBytes: 70_000, deviceStateRawBytes: 14_662, deviceStateWireBytes: 190,
                                  framingBytes: 120)
        metrics.committed(epoch: 7)
        metrics.setRole(.primary)
        metrics.witnessTerm(12)
        let server = try MetricsServer(listen: Endpoint(host: "127.0.0.1", port: 0), metrics: metrics)
        defer { server.close() }
        #expect(server.endpoint.port != 0, "port 0 binds a free port and reports it")

        let reply = try httpExchange(port: server.endpoint.port, Array("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        #expect(reply.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(reply.prefix(200))")
        #expect(reply.contains("\r\nContent-Type: text/plain; version=0.0.4"))
        let split = try #require(reply.range(of: "\r\n\r\n"))
        let head = String(reply[..<split.lowerBound])
        let body = String(reply[split.upperBound...])
        #expect(head.contains("Content-Length: \(body.utf8.count)"))
        #expect(sample(body, #"understudy_checkpoints_total{vm="web-1"}"#) == 1)
        #expect(sample(body, #"understudy_checkpoints_by_reason_total{vm="web-1",reason="output"}"#) == 1)
        #expect(sample(body, #"understudy_checkpoints_by_reason_total{vm="web-1",reason="interval"}"#) == 0)
        #expect(sample(body, #"understudy_checkpoints_by_reason_total{vm="web-1",reason="catch-up"}"#) == 0)
        #expect(sample(body, #"understudy_checkpoint_raw_bytes_total{vm="web-1"}"#) == 1_228_800)
        #expect(sample(body, #"understudy_checkpoint_wire_bytes_total{vm="web-1"}"#) == 70_000)
        #expect(sample(body, #"understudy_device_state_raw_bytes_total{vm="web-1"}"#) == 14_662)
        #expect(sample(body, #"understudy_device_state_wire_bytes_total{vm="web-1"}"#) == 190)
        #expect(sample(body, #"understudy_checkpoint_framing_bytes_total{vm="web-1"}"#) == 120)
        #expect(sample(body, #"understudy_committed_epoch{vm="web-1"}"#) == 7)
        #expect(sample(body, #"understudy_role{vm="web-1",role="primary"}"#) == 1)
        #expect(sample(body, #"understudy_role{vm="web-1",role="backup"}"#) == 0)
        #expect(sample(body, #"understudy_witness_term{vm="web-1"}"#) == 12)
        // 1.5 ms lands in the 2 ms bucket and above, not in the 1 ms one.
        #expect(sample(body, #"understudy_checkpoint_pause_seconds_bucket{vm="web-1",le="0.001"}"#) == 0)
        #expect(sample(body, #"understudy_checkpoint_pause_seconds_bucket{vm="web-1",le="0.002"}"#) == 1)
        #expect(sample(body, #"understudy_checkpoint_dirty_pages_bucket{vm="web-1",le="1000.0"}"#) == 1)
        #expect(sample(body, #"understudy_replication_lag_epochs{vm="web-1"}"#) == 0)
        #expect(body.contains("# TYPE understudy_heartbeat_rtt_seconds histogram"))

        // A query string is allowed; HEAD answers the head alone.
        #expect(try scrape(port: server.endpoint.port) != nil)
        #expect(try httpExchange(port: server.endpoint.port, Array("GET /metrics?x=1 HTTP/1.0\r\n\r\n".utf8)).hasPrefix("HTTP/1.1 200 "))
        let headOnly = try httpExchange(port: server.endpoint.port, Array("HEAD /metrics HTTP/1.1\r\n\r\n".utf8))
        #expect(headOnly.hasPrefix("HTTP/1.1 200 ") && headOnly.hasSuffix("\r\n\r\n"))
    }

    @Test func otherPathsMethodsAndGarbageGetErrorsAndTheServerKeepsServing() throws {
        let metrics = AgentMetrics(vm: "web-2")
        let server = try MetricsServer(listen: Endpoint(host: "127.0.0.1", port: 0), metrics: metrics)
        defer { server.close() }
        let port = server.endpoint.port
        func status(_ request: String, closeWriting: Bool = false) throws -> String {
            try httpExchange(port: port, Array(request.utf8), closeWriting: closeWriting).components(separatedBy: "\r\n")[0]
        }
        #expect(try status("GET / HTTP/1.1\r\n\r\n") == "HTTP/1.1 404 Not Found")
        #expect(try status("GET /metricsx HTTP/1.1\r\n\r\n") == "HTTP/1.1 404 Not Found")
        let post = try httpExchange(port: port, Array("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n".utf8))
        #expect(post.hasPrefix("HTTP/1.1 405 Method Not Allowed\r\n") && post.contains("\r\nAllow: GET, HEAD\r\n"))
        #expect(try status("DELETE /metrics HTTP/1.1\r\n\r\n") == "HTTP/1.1 405 Method Not Allowed")
        #expect(try status("\u{1}\u{2}garbage\r\n\r\n") == "HTTP/1.1 400 Bad Request")
        #expect(try status("GET /metrics\r\n\r\n") == "HTTP/1.1 400 Bad Request", "no HTTP version")
        #expect(try status("GET /metrics HTTP/1.1\r\n", closeWriting: true) == "", "a head cut off gets no answer")
        #expect(try status("", closeWriting: true) == "")
        #expect(try status("GET /metrics HTTP/1.1\r\nX: " + String(repeating: "a", count: 20_000) + "\r\n\r\n")
                == "HTTP/1.1 431 Request Header Fields Too Large")
        var random = SystemRandomNumberGenerator()
        for _ in 0..<20 {
            let junk = (0..<Int.random(in: 1...600, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            _ = try httpExchange(port: port, junk + [13, 10, 13, 10])
        }
        // After all that it still answers.
        #expect(try scrape(port: port)?.contains("understudy_checkpoints_total{vm=\"web-2\"} 0") == true)
    }

    @Test func aSilentClientDoesNotStopTheServer() throws {
        let server = try MetricsServer(listen: Endpoint(host: "127.0.0.1", port: 0), metrics: AgentMetrics(vm: "web-3"))
        defer { server.close() }
        // Connects and never sends: the server gives up on it after its timeout and serves the next.
        let silent = try connectLoopback(port: server.endpoint.port)
        defer { close(silent) }
        let started = ContinuousClock.now
        #expect(try scrape(port: server.endpoint.port) != nil)
        #expect(ContinuousClock.now - started < .seconds(5))
    }

    @Test func aClientThatTricklesItsRequestIsCutOffAtTheConnectionDeadline() throws {
        let server = try MetricsServer(listen: Endpoint(host: "127.0.0.1", port: 0), metrics: AgentMetrics(vm: "web-4"))
        defer { server.close() }
        // A byte every 300 ms never lets a per-read timeout expire; only a deadline for the whole
        // connection stops it from holding the server for the 40 s its request takes.
        let trickler = try connectLoopback(port: server.endpoint.port)
        defer { close(trickler) }
        let stop = Latch()
        let thread = JoinableThread(name: "trickler") {
            for byte in Array("GET /metrics HTTP/1.1\r\nX: ".utf8) + Array(repeating: UInt8(ascii: "a"), count: 100) {
                if stop.wait(timeout: .milliseconds(300)) { return }
                guard send(trickler, [byte], 1, Int32(MSG_NOSIGNAL)) == 1 else { return }
            }
        }
        defer {
            stop.trigger()
            thread.join()
        }
        Thread.sleep(forTimeInterval: 0.2)
        let started = ContinuousClock.now
        #expect(try scrape(port: server.endpoint.port) != nil)
        #expect(ContinuousClock.now - started < .seconds(4))
    }

    @Test func anAddressInUseIsAClearError() throws {
        let first = try MetricsServer(listen: Endpoint(host: "127.0.0.1", port: 0), metrics: AgentMetrics(vm: "a"))
        defer { first.close() }
        let error = #expect(throws: MetricsServerError.self) {
            _ = try MetricsServer(listen: first.endpoint, metrics: AgentMetrics(vm: "b"))
        }
        #expect(error?.description == "cannot serve metrics on \(first.endpoint) (metrics.listen): Address already in use")
    }

    @Test func agentsInOneProcessKeepTheirOwnMetrics() throws {
        let a = AgentMetrics(vm: "same-vm")
        let b = AgentMetrics(vm: "same-vm")
        a.checkpointCaptured(.interval, pause: .milliseconds(1), dirtyPages: 1, unacknowledged: 1)
        a.setRole(.primary)
        b.setRole(.backup)
        let textA = String(decoding: a.exposition(), as: UTF8.self)
        let textB = String(decoding: b.exposition(), as: UTF8.self)
        #expect(sample(textA, #"understudy_checkpoints_total{vm="same-vm"}"#) == 1)
        #expect(sample(textB, #"understudy_checkpoints_total{vm="same-vm"}"#) == 0)
        #expect(sample(textA, #"understudy_role{vm="same-vm",role="primary"}"#) == 1)
        #expect(sample(textB, #"understudy_role{vm="same-vm",role="primary"}"#) == 0)
    }

    @Test func gateRuleCountersAdvanceAcrossReloadsAndGates() throws {
        let metrics = AgentMetrics(vm: "v")
        let gates = (NSObject(), NSObject())
        let first = ObjectIdentifier(gates.0), second = ObjectIdentifier(gates.1)
        func statistics(frames: UInt64, denied: UInt64, unmatched: UInt64) -> GatePolicyStatistics {
            GatePolicyStatistics(rules: [.init(name: "no ssh", rule: "deny tcp both port 22", frames: frames, bytes: frames * 60, deniedFrames: denied)],
                                 defaultAction: "deny", unmatchedFrames: unmatched, unmatchedBytes: unmatched * 100)
        }
        metrics.gatePolicy(gate: first, statistics(frames: 5, denied: 5, unmatched: 2))
        metrics.gatePolicy(gate: first, statistics(frames: 7, denied: 7, unmatched: 2))
        var text = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(sample(text, #"understudy_gate_rule_frames_total{vm="v",rule="0",name="no ssh"}"#) == 7, "\(text)")
        #expect(sample(text, #"understudy_gate_rule_bytes_total{vm="v",rule="0",name="no ssh"}"#) == 420)
        #expect(sample(text, #"understudy_gate_rule_denied_frames_total{vm="v",rule="0",name="no ssh"}"#) == 7)
        #expect(sample(text, #"understudy_gate_rule_denied_frames_total{vm="v",rule="default",name="default deny"}"#) == 2)
        // A reload reset the rule's counters: what it counted since is new.
        metrics.gatePolicy(gate: first, statistics(frames: 1, denied: 1, unmatched: 3))
        // A new gate (a new role) counts from zero.
        metrics.gatePolicy(gate: second, statistics(frames: 2, denied: 2, unmatched: 0))
        text = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(sample(text, #"understudy_gate_rule_frames_total{vm="v",rule="0",name="no ssh"}"#) == 10)
        #expect(sample(text, #"understudy_gate_rule_frames_total{vm="v",rule="default",name="default deny"}"#) == 3)
        withExtendedLifetime(gates) {}
    }

    @Test func droppedFramesFollowTheGateAcrossRoleChanges() throws {
        let metrics = AgentMetrics(vm: "v")
        // The gates stay alive for the test, so their identifiers differ.
        let gates = (NSObject(), NSObject())
        let first = ObjectIdentifier(gates.0), second = ObjectIdentifier(gates.1)
        metrics.output(gate: first, heldFrames: 3, heldBytes: 4500, droppedFrames: 5)
        metrics.output(gate: first, heldFrames: 2, heldBytes: 3000, droppedFrames: 8)
        var text = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(sample(text, #"understudy_output_dropped_frames_total{vm="v"}"#) == 8)
        #expect(sample(text, #"understudy_output_held_frames{vm="v"}"#) == 2)
        #expect(sample(text, #"understudy_output_held_bytes{vm="v"}"#) == 3000)
        // A new gate (a new role) counts from zero again: its 2 drops are new ones.
        metrics.output(gate: second, heldFrames: 0, heldBytes: 0, droppedFrames: 2)
        metrics.output(gate: nil, heldFrames: 0, heldBytes: 0, droppedFrames: 0)
        text = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(sample(text, #"understudy_output_dropped_frames_total{vm="v"}"#) == 10)
        #expect(sample(text, #"understudy_output_held_frames{vm="v"}"#) == 0)
        withExtendedLifetime(gates) {}
    }
}

@Suite("Metrics of a replicating pair", .tags(.vm), .skippedInQuickLoop)
struct MetricsEndToEndTests {
    /// A free TCP port on loopback (bound and released: the kernel does not hand it out again at once).
    static func freePort() throws -> UInt16 {
        let probe = try TCPListener(endpoint: Endpoint(host: "127.0.0.1", port: 0))
        defer { probe.close() }
        return probe.endpoint.port
    }

    /// Scrapes until `condition` holds for the text (or `timeout` passes); returns the last text.
    static func scrape(port: UInt16, timeout: Duration = .seconds(10), until condition: (String) -> Bool) throws -> String {
        let deadline = ContinuousClock.now + timeout
        var text = ""
        repeat {
            text = try scrapeOrThrow(port)
            if condition(text) { return text }
            Thread.sleep(forTimeInterval: 0.02)
        } while ContinuousClock.now < deadline
        return text
    }

    /// A backup node's configuration without a standby QEMU (this test needs only the replica).
    static func backupConfiguration(_ workspace: Workspace, vm: String, listen: UInt16, metrics: String) throws -> AgentConfiguration {
        try AgentConfiguration(document: TOMLDocument(parsing: """
            [node]
            name = "backup"
            certificates = "\(workspace.certificates)"
            [peer]
            name = "primary"
            [vm]
            id = "\(vm)"
            memory_mib = 16
            kernel = "/nonexistent/vmlinuz"
            qemu = "/nonexistent/qemu-system-x86_64"
            run_dir = "\(workspace.path)/run"
            [backup]
            listen = "127.0.0.1:\(listen)"
            replica_dir = "\(workspace.path)/replica"
            [heartbeat]
            interval_ms = 20
            min_timeout_ms = 5000
            [metrics]
            listen = "\(metrics)"
            """, source: "backup.toml"))
    }

    @Test func anAgentWhoseMetricsAddressIsTakenStopsAtStart() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let taken = try TCPListener(endpoint: Endpoint(host: "127.0.0.1", port: 0))
        defer { taken.close() }
        let configuration = try Self.backupConfiguration(workspace, vm: "taken", listen: try Self.freePort(),
                                                         metrics: "\(taken.endpoint)")
        let node = try PairNode(configuration: configuration, logger: quietLogger, stop: StopSignal(signals: []))
        let error = #expect(throws: MetricsServerError.self) { try node.run(startingAs: .backup) }
        #expect(error?.description == "cannot serve metrics on \(taken.endpoint) (metrics.listen): Address already in use")
        #expect(node.metricsEndpoint == nil)
    }

    /// A backup agent (`PairNode`, configured from TOML with `[metrics] listen`) and a primary
    /// streaming a synthetic guest to it with its own metrics endpoint: both scrapes show the
    /// replication as it happens.
    @Test func scrapedMetricsFollowTheReplication() throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let vm = "metrics-\(UUID().uuidString.prefix(6).lowercased())"
        let backupPort = try Self.freePort()
        let configuration = try Self.backupConfiguration(workspace, vm: vm, listen: backupPort, metrics: "127.0.0.1:0")
        let stop = StopSignal(signals: [])
        let node = try PairNode(configuration: configuration, logger: quietLogger, stop: stop)
        let nodeFailure = Mutex<String?>(nil)
        let nodeThread = JoinableThread(name: "test-node") {
            do {
                try node.run(startingAs: .backup)
            } catch {
                nodeFailure.withLock { $0 = "\(error)" }
                stop.trigger(.requested(nil))
            }
        }
        var nodeJoined = false
        defer {
            if !nodeJoined {
                stop.trigger(.requested(nil))
                nodeThread.join()
            }
        }

        let primaryMetrics = AgentMetrics(vm: vm)
        primaryMetrics.setRole(.primary)
        let primaryServer = try MetricsServer(listen: Endpoint(host: "127.0.0.1", port: 0), metrics: primaryMetrics)
        defer { primaryServer.close() }
        var primaryConfiguration = PrimaryConfiguration(nodeName: "primary", backup: Endpoint(host: "127.0.0.1", port: backupPort),
                                                        tls: workspace.tls(node: "primary", peer: "backup"), interval: .milliseconds(5))
        primaryConfiguration.heartbeat = HeartbeatMonitor.Configuration(interval: .milliseconds(20), missedLimit: 250)
        primaryConfiguration.metrics = primaryMetrics
        let guest = SyntheticGuest(identity: configuration.identity, pagesPerCheckpoint: 32, mix: [.text, .sparseUpdate, .zero], seed: 7)

        // The node's endpoints come up (the backup listens once its replica is open).
        let deadline = ContinuousClock.now + .seconds(20)
        var primary: PrimaryReplicator?
        while primary == nil, ContinuousClock.now < deadline, !stop.isSet {
            let attempt = PrimaryReplicator(source: guest, configuration: primaryConfiguration, logger: quietLogger)
            do {
                try attempt.start()
                primary = attempt
            } catch {
                attempt.abandon()
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
        let replicator = try #require(primary, "the backup agent accepts a primary (\(nodeFailure.withLock { $0 } ?? "running"))")
        defer { replicator.stop() }
        let backupPortForMetrics = try #require(node.metricsEndpoint?.port)
        let early = try Self.scrape(port: backupPortForMetrics) { _ in true }
        #expect(sample(early, #"understudy_role{vm="\#(vm)",role="backup"}"#) == 1, "\(early)")
        #expect(sample(early, #"understudy_role{vm="\#(vm)",role="starting"}"#) == 0)

        try replicator.runCheckpoints(count: 20)
        let first = try Self.scrape(port: primaryServer.endpoint.port) { _ in true }
        try replicator.runCheckpoints(count: 20)
        try replicator.drain(timeout: .seconds(20))
        let checkpoints = #"understudy_checkpoints_total{vm="\#(vm)"}"#
        // Heartbeats go every 20 ms on both sides; their echoes arrive soon after.
        let rtt = #"understudy_heartbeat_rtt_seconds_count{vm="\#(vm)"}"#
        let second = try Self.scrape(port: primaryServer.endpoint.port) { (sample($0, rtt) ?? 0) > 0 }
        #expect(sample(first, checkpoints) == 20, "\(first)")
        #expect(sample(second, checkpoints) == 40, "checkpoints increase between scrapes")
        #expect(sample(second, #"understudy_committed_epoch{vm="\#(vm)"}"#) == 40)
        #expect(sample(second, #"understudy_replication_lag_epochs{vm="\#(vm)"}"#) == 0)
        #expect((sample(second, #"understudy_checkpoint_wire_bytes_total{vm="\#(vm)"}"#) ?? 0) > 0)
        #expect((sample(second, #"understudy_device_state_raw_bytes_total{vm="\#(vm)"}"#) ?? 0) > 0)
        #expect((sample(second, #"understudy_device_state_wire_bytes_total{vm="\#(vm)"}"#) ?? 0) > 0)
        #expect((sample(second, #"understudy_checkpoint_framing_bytes_total{vm="\#(vm)"}"#) ?? 0) >= 40 * 2 * Double(Frame.headerSize))
        #expect((sample(second, #"understudy_checkpoint_raw_bytes_total{vm="\#(vm)"}"#) ?? 0) >= 40 * 32 * 4096 / 2)
        #expect(sample(second, #"understudy_checkpoint_pause_seconds_count{vm="\#(vm)"}"#) == 40)
        #expect(sample(second, #"understudy_checkpoint_dirty_pages_count{vm="\#(vm)"}"#) == 40)
        #expect(sample(second, #"understudy_ack_latency_seconds_count{vm="\#(vm)"}"#) == 40)
        #expect((sample(second, rtt) ?? 0) > 0, "the backup echoes the primary's heartbeats")
        #expect(sample(second, #"understudy_role{vm="\#(vm)",role="primary"}"#) == 1)

        let backup = try Self.scrape(port: backupPortForMetrics) {
            sample($0, #"understudy_committed_epoch{vm="\#(vm)"}"#) == 40 && (sample($0, rtt) ?? 0) > 0
        }
        #expect(sample(backup, #"understudy_committed_epoch{vm="\#(vm)"}"#) == 40, "\(backup)")
        #expect(sample(backup, #"understudy_checkpoints_committed_total{vm="\#(vm)"}"#) == 40)
        #expect((sample(backup, rtt) ?? 0) > 0, "the primary echoes the backup's heartbeats")
        #expect(sample(backup, #"understudy_role{vm="\#(vm)",role="backup"}"#) == 1)
        #expect(sample(backup, #"understudy_output_held_frames{vm="\#(vm)"}"#) == 0)
        let sinceCommit = try #require(sample(backup, #"understudy_seconds_since_commit{vm="\#(vm)"}"#))
        #expect(sinceCommit >= 0 && sinceCommit < 10)

        // The endpoint goes with the agent.
        stop.trigger(.requested(nil))
        nodeThread.join()
        nodeJoined = true
        #expect(node.metricsEndpoint == nil)
        #expect(throws: (any Error).self) { try httpExchange(port: backupPortForMetrics, Array("GET /metrics HTTP/1.1\r\n\r\n".utf8)) }
    }
}

/// `scrape(port:)`, throwing (which fails the test) instead of returning nil.
private func scrapeOrThrow(_ port: UInt16) throws -> String {
    guard let text = try scrape(port: port) else { throw TransportError.closed("no 200 reply from the metrics endpoint on port \(port)") }
    return text
}
