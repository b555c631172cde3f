import Foundation
import UnderstudySystem
#if canImport(Glibc)
import Glibc
#endif

/// The client of the consistency tests and the demo: from inside a pair network's client
/// namespace, it asks the guest's counter service (`Deploy/guest/counter-service.c`) for the next
/// value, back to back, over one TCP connection, and records every reply. When the connection
/// breaks it reconnects and counts that, since whether TCP survives a failover is part of what
/// the tests and the demo measure.
public final class CounterClient: @unchecked Sendable {
    public struct Reply: Sendable {
        public let value: UInt64
        /// When the request went out and when its reply came back.
        public let sent: ContinuousClock.Instant
        public let at: ContinuousClock.Instant

        /// The request's round trip (one request at a time: nothing else waited on the connection).
        public var roundTrip: Duration { at - sent }
    }

    private let network: PairNetwork
    private let port: UInt16
    private let lock = NSLock()
    private var replies: [Reply] = []
    private var reconnections = 0
    private var problems: [String] = []
    private var stopping = false
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)

    public init(network: PairNetwork, port: UInt16 = 7000) {
        self.network = network
        self.port = port
    }

    /// Starts asking on a thread of its own (it enters the client namespace).
    public func start() {
        let thread = Thread { [self] in
            defer { finished.signal() }
            do {
                try network.enterClientNamespace()
            } catch {
                note("\(error)")
                return
            }
            var connectedOnce = false
            while !isStopping {
                guard let socket = connect(timeout: .seconds(120), untilStopped: true) else { return }
                if connectedOnce { lock.withLock { reconnections += 1 } }
                connectedOnce = true
                defer { close(socket) }
                while !isStopping {
                    do {
                        let sent = ContinuousClock.now
                        let line = try Self.exchange(socket, "n")
                        guard let value = UInt64(line) else {
                            note("unexpected reply \"\(line)\"")
                            return
                        }
                        lock.withLock { replies.append(Reply(value: value, sent: sent, at: .now)) }
                    } catch {
                        note("connection broke: \(error)")
                        break
                    }
                }
            }
        }
        thread.name = "counter-client"
        self.thread = thread
        thread.start()
    }

    /// Stops after the request in progress and closes the connection.
    public func stop() {
        lock.withLock { stopping = true }
        if thread != nil { finished.wait() }
        thread = nil
    }

    public var values: [UInt64] { lock.withLock { replies.map(\.value) } }
    public var history: [Reply] { lock.withLock { replies } }
    public var reconnects: Int { lock.withLock { reconnections } }
    public var errors: [String] { lock.withLock { problems } }

    /// Waits until at least `count` replies arrived in all.
    public func waitForReplies(_ count: Int, timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if lock.withLock({ replies.count }) >= count { return true }
            Thread.sleep(forTimeInterval: 0.01)
        }
        return false
    }

    /// One request on a new connection of its own, from the client namespace (e.g. "s" or "x").
    public func request(_ line: String, timeout: Duration = .seconds(60)) throws -> String {
        try NetworkNamespace.run(in: network.namespace, thread: "counter-request") { [self] in
            guard let socket = connect(timeout: timeout, untilStopped: false) else { throw HarnessError("cannot connect to the guest service") }
            defer { close(socket) }
            return try Self.exchange(socket, line)
        }
    }

    private var isStopping: Bool { lock.withLock { stopping } }

    private func note(_ problem: String) { lock.withLock { problems.append(problem) } }

    /// Connects to the guest, retrying while it boots; nil when `timeout` passes (or, with
    /// `untilStopped`, when stop was asked).
    private func connect(timeout: Duration, untilStopped: Bool) -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline, !(untilStopped && isStopping) {
            if let fd = Self.openConnection(to: network.guestAddress, port: port) { return fd }
            Thread.sleep(forTimeInterval: 0.2)
        }
        note("could not connect within \(timeout)")
        return nil
    }

    /// One attempt to open a TCP connection to the service (call from the client namespace);
    /// nil when it fails. Replies may wait for a failover, so reads and writes time out only
    /// after 30 s.
    public static func openConnection(to address: String, port: UInt16) -> Int32? {
        guard let fd = try? Endpoint(host: address, port: port).connect(timeoutMilliseconds: 2000) else { return nil }
        var wait = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    /// Sends one request line and reads one reply line.
    public static func exchange(_ fd: Int32, _ request: String) throws -> String {
        let bytes = Array((request + "\n").utf8)
        let sent = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == bytes.count else { throw HarnessError("send failed: \(String(cString: strerror(errno)))") }
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            let received = recv(fd, &byte, 1, 0)
            if received < 0 && errno == EINTR { continue }
            guard received == 1 else {
                throw HarnessError(received == 0 ? "closed by the guest" : "receive failed: \(String(cString: strerror(errno)))")
            }
            if byte == UInt8(ascii: "\n") { return String(decoding: line, as: UTF8.self) }
            line.append(byte)
        }
    }
}
