import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The client of the consistency test: from inside a test network's client namespace, it asks the
/// guest's counter service (`Deploy/guest/counter-service.c`) for the next value, back to back,
/// over one TCP connection, and records every reply. When the connection breaks it reconnects
/// and counts that, since whether TCP survives a failover is part of what the test measures.
public final class CounterClient: @unchecked Sendable {
    public struct Reply: Sendable {
        public let value: UInt64
        public let at: ContinuousClock.Instant
    }

    private let network: TestNetwork
    private let port: UInt16
    private let lock = NSLock()
    private var replies: [Reply] = []
    private var reconnections = 0
    private var problems: [String] = []
    private var stopping = false
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)

    public init(network: TestNetwork, port: UInt16 = 7000) {
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
                        let line = try Self.exchange(socket, "n")
                        guard let value = UInt64(line) else {
                            note("unexpected reply \"\(line)\"")
                            return
                        }
                        lock.withLock { replies.append(Reply(value: value, at: .now)) }
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
        let result = Mutex<Result<String, TestSupportError>>(.failure(TestSupportError("no reply")))
        let done = DispatchSemaphore(value: 0)
        let thread = Thread { [self] in
            defer { done.signal() }
            do {
                try network.enterClientNamespace()
                guard let socket = connect(timeout: timeout, untilStopped: false) else { throw TestSupportError("cannot connect to the guest service") }
                defer { close(socket) }
                let reply = try Self.exchange(socket, line)
                result.withLock { $0 = .success(reply) }
            } catch {
                result.withLock { $0 = .failure(TestSupportError("\(error)")) }
            }
        }
        thread.start()
        done.wait()
        return try result.withLock { $0 }.get()
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
    /// nil with errno set when it fails. Replies may wait for a failover, so reads and writes
    /// time out only after 30 s.
    public static func openConnection(to address: String, port: UInt16) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var wait = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var socketAddress = sockaddr_in()
        socketAddress.sin_family = sa_family_t(AF_INET)
        socketAddress.sin_port = port.bigEndian
        inet_pton(AF_INET, address, &socketAddress.sin_addr)
        let result = withUnsafePointer(to: &socketAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            let code = errno
            close(fd)
            errno = code
            return nil
        }
        return fd
    }

    /// Sends one request line and reads one reply line.
    public static func exchange(_ fd: Int32, _ request: String) throws -> String {
        let bytes = Array((request + "\n").utf8)
        let sent = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == bytes.count else { throw TestSupportError("send failed: \(String(cString: strerror(errno)))") }
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            let received = recv(fd, &byte, 1, 0)
            if received < 0 && errno == EINTR { continue }
            guard received == 1 else {
                throw TestSupportError(received == 0 ? "closed by the guest" : "receive failed: \(String(cString: strerror(errno)))")
            }
            if byte == UInt8(ascii: "\n") { return String(decoding: line, as: UTF8.self) }
            line.append(byte)
        }
    }
}
