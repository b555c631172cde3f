import Foundation
import Testing
import UnderstudyHarness
import UnderstudySystem
#if canImport(Glibc)
import Glibc
#endif

/// Serialized: the close test counts the emulator's threads across the whole process.
@Suite("LinkEmulator (delay, rate, cut and close of a userspace WAN link)", .serialized)
struct LinkEmulatorTests {
    @Test("a round trip takes at least twice the one-way delay, and a new delay applies at once")
    func delay() throws {
        let server = try LocalServer(handler: LocalServer.echo)
        let emulator = try LinkEmulator(target: ("127.0.0.1", server.port), shape: .init(oneWayDelay: .milliseconds(40)))
        defer {
            emulator.close()
            server.stop()
        }
        let fd = try connectClient(to: emulator.port)
        defer { close(fd) }
        for _ in 0..<2 {
            let roundTrip = try timedRoundTrip(fd)
            #expect(roundTrip >= .milliseconds(80) && roundTrip < .milliseconds(480), "round trip \(roundTrip)")
        }
        emulator.setShape(.init(oneWayDelay: .milliseconds(150)))
        let roundTrip = try timedRoundTrip(fd)
        #expect(roundTrip >= .milliseconds(300) && roundTrip < .milliseconds(700), "round trip \(roundTrip)")
    }

    @Test("2 MB at 2.5 MB/s take at least 0.75 s and arrive whole")
    func bandwidth() throws {
        let server = try LocalServer(handler: LocalServer.sink)
        let emulator = try LinkEmulator(target: ("127.0.0.1", server.port),
                                        shape: .init(oneWayDelay: .milliseconds(5), bytesPerSecond: 2_500_000))
        defer {
            emulator.close()
            server.stop()
        }
        let fd = try connectClient(to: emulator.port)
        defer { close(fd) }
        let payload = [UInt8](repeating: 0x5A, count: 2_000_000)
        let start = ContinuousClock.now
        try writeAll(fd, payload)
        shutdown(fd, Int32(SHUT_WR))
        let reply = readExactly(fd, count: 8)
        let elapsed = ContinuousClock.now - start
        #expect(reply.map { UInt64(littleEndianBytes: $0) } == UInt64(payload.count))
        #expect(elapsed >= .milliseconds(750) && elapsed < .seconds(5), "2 MB took \(elapsed)")
        // Counters settle just after the bytes they count arrive.
        #expect(eventually(within: .seconds(1)) { emulator.bytesForwarded == (payload.count, 8) }, "forwarded \(emulator.bytesForwarded)")
    }

    @Test("a full bottleneck queue holds the sender back, and delivery keeps to the rate")
    func backpressure() throws {
        let server = try LocalServer(handler: LocalServer.sink)
        let rate = 100_000
        let emulator = try LinkEmulator(target: ("127.0.0.1", server.port),
                                        shape: .init(bytesPerSecond: rate, queueBytes: 64 * 1024))
        defer {
            emulator.close()
            server.stop()
        }
        let fd = try connectClient(to: emulator.port)
        defer { close(fd) }
        // Write without blocking for half a second. An emulator that read regardless of its queue
        // would take everything loopback can carry (gigabytes); one that stops reading lets only
        // the socket buffers fill (a few MB at most).
        let chunk = [UInt8](repeating: 7, count: 65536)
        var written = 0
        let start = ContinuousClock.now
        while ContinuousClock.now - start < .milliseconds(500) {
            // The pointer and count come from the array, valid for the call.
            let count = chunk.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
            if count > 0 { written += count } else { usleep(1000) }
        }
        let elapsed = ContinuousClock.now - start
        let delivered = emulator.bytesForwarded.toTarget
        #expect(written < 32 << 20, "the sender wrote \(written) bytes in \(elapsed)")
        let allowed = Int(Double(rate) * (elapsed / .seconds(1)))
        #expect(delivered > 0 && delivered <= allowed + 16 * 1024, "\(delivered) bytes delivered in \(elapsed) at \(rate) B/s")
    }

    @Test("cut resets established connections on both sides and closes new ones; restore lets them pass again")
    func cutAndRestore() throws {
        let ended = DispatchSemaphore(value: 0)
        let server = try LocalServer { fd in
            LocalServer.echo(fd)
            ended.signal()
        }
        let emulator = try LinkEmulator(target: ("127.0.0.1", server.port), shape: .init(oneWayDelay: .milliseconds(10)))
        defer {
            emulator.close()
            server.stop()
        }
        let established = try connectClient(to: emulator.port)
        defer { close(established) }
        _ = try timedRoundTrip(established)

        emulator.cut()
        #expect(emulator.isCut)
        #expect(readOutcome(established) == .endedOrReset, "the client side of a cut connection")
        #expect(ended.wait(timeout: .now() + 2) == .success, "the server side of a cut connection did not end")

        let during = try connectClient(to: emulator.port)
        defer { close(during) }
        #expect(readOutcome(during) == .endedOrReset, "a connection made while cut")

        emulator.restore()
        #expect(!emulator.isCut)
        let after = try connectClient(to: emulator.port)
        defer { close(after) }
        _ = try timedRoundTrip(after)
    }

    @Test("a silent cut passes nothing either way and closes nothing; restore resets the stalled connections and lets new ones pass")
    func silentCutAndRestore() throws {
        let ended = DispatchSemaphore(value: 0)
        let server = try LocalServer { fd in
            LocalServer.echo(fd)
            ended.signal()
        }
        let emulator = try LinkEmulator(target: ("127.0.0.1", server.port))
        defer {
            emulator.close()
            server.stop()
        }
        let established = try connectClient(to: emulator.port, receiveTimeout: 1)
        defer { close(established) }
        _ = try timedRoundTrip(established)

        emulator.cut(.silence)
        #expect(emulator.isCut)
        try writeAll(established, [1, 2, 3, 4])
        #expect(readOutcome(established) == .timedOut, "no echo crosses a silent link, and the connection stays open")
        #expect(ended.wait(timeout: .now() + 0.2) == .timedOut, "the server side stays open too")
        let during = try connectClient(to: emulator.port, receiveTimeout: 1)
        defer { close(during) }
        try writeAll(during, [5])
        #expect(readOutcome(during) == .timedOut, "a connection made while silent is silent too")

        emulator.restore()
        #expect(!emulator.isCut)
        #expect(readOutcome(established) == .endedOrReset, "a stalled connection is dropped, its held bytes never delivered")
        #expect(readOutcome(during) == .endedOrReset)
        #expect(ended.wait(timeout: .now() + 2) == .success, "the server side of a stalled connection did not end")
        let after = try connectClient(to: emulator.port)
        defer { close(after) }
        _ = try timedRoundTrip(after)
    }

    @Test("close with connections open returns promptly, joins every thread, and may be called again")
    func closeWithConnectionsOpen() throws {
        let server = try LocalServer(handler: LocalServer.echo)
        let emulator = try LinkEmulator(target: ("127.0.0.1", server.port),
                                        shape: .init(oneWayDelay: .milliseconds(20), bytesPerSecond: 1_000_000))
        defer { server.stop() }
        let clients = try (0..<3).map { _ in try connectClient(to: emulator.port) }
        defer { clients.forEach { close($0) } }
        for fd in clients { _ = try timedRoundTrip(fd) }
        // Leave bytes queued in the link, so that close() has to interrupt a busy connection too.
        try writeAll(clients[0], [UInt8](repeating: 1, count: 200_000))
        #expect(emulatorThreads(emulator) > 0)

        let start = ContinuousClock.now
        emulator.close()
        #expect(ContinuousClock.now - start < .seconds(1))
        #expect(emulatorThreads(emulator) == 0)
        emulator.close()
        for fd in clients {
            #expect(readOutcome(fd, skippingData: true) == .endedOrReset)
        }
    }
}

// MARK: - Helpers

/// A TCP server on 127.0.0.1 (a free port) running `handler` on each connection, on a thread of
/// its own; the connection is closed when the handler returns.
private final class LocalServer: @unchecked Sendable {
    let listener: TCPListener
    private let lock = NSLock()
    private var connections: [(fd: Int32, thread: JoinableThread)] = []
    private var acceptThread: JoinableThread?

    var port: UInt16 { listener.endpoint.port }

    init(handler: @escaping @Sendable (Int32) -> Void) throws {
        listener = try TCPListener(endpoint: Endpoint(host: "127.0.0.1", port: 0))
        acceptThread = JoinableThread(name: "test-accept") { [self] in
            while let fd = try? listener.accept().fd {
                let thread = JoinableThread(name: "test-conn") { handler(fd) }
                lock.withLock { connections.append((fd, thread)) }
            }
        }
    }

    /// Stops accepting, ends every connection's handler and joins all threads.
    func stop() {
        listener.close()
        acceptThread?.join()
        for (fd, thread) in connections {
            shutdown(fd, Int32(SHUT_RDWR))
            thread.join()
            close(fd)
        }
    }

    /// Sends back whatever arrives, until EOF or an error.
    static let echo: @Sendable (Int32) -> Void = { fd in
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = read(fd, &buffer, buffer.count)
            guard count > 0, (try? writeAll(fd, Array(buffer[0..<count]))) != nil else { return }
        }
    }

    /// Reads until EOF, then answers with the byte count (u64, little-endian).
    static let sink: @Sendable (Int32) -> Void = { fd in
        var buffer = [UInt8](repeating: 0, count: 65536)
        var total: UInt64 = 0
        while true {
            let count = read(fd, &buffer, buffer.count)
            guard count > 0 else { break }
            total += UInt64(count)
        }
        try? writeAll(fd, withUnsafeBytes(of: total.littleEndian) { Array($0) })
    }
}

private struct SocketFailure: Error, CustomStringConvertible {
    let description: String
}

/// A client connection with a receive timeout (3 s by default), so that a missing reply fails the
/// test, not hangs it.
private func connectClient(to port: UInt16, receiveTimeout seconds: Int = 3) throws -> Int32 {
    let fd = try Endpoint(host: "127.0.0.1", port: port).connect(timeoutMilliseconds: 2000)
    var timeout = timeval(tv_sec: seconds, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    return fd
}

private func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws {
    var offset = 0
    while offset < bytes.count {
        // The pointer and count come from the array slice, valid for the call.
        let written = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard written > 0 else { throw SocketFailure(description: "send: \(String(cString: strerror(errno)))") }
        offset += written
    }
}

/// Exactly `count` bytes, or nil at EOF, on an error or after the receive timeout.
private func readExactly(_ fd: Int32, count: Int) -> [UInt8]? {
    var bytes = [UInt8](repeating: 0, count: count)
    var offset = 0
    while offset < count {
        // The pointer and count come from the array's unread tail, valid for the call.
        let got = bytes[offset...].withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard got > 0 else { return nil }
        offset += got
    }
    return bytes
}

/// Writes a few bytes, reads their echo and returns how long that took.
private func timedRoundTrip(_ fd: Int32) throws -> Duration {
    let message: [UInt8] = [1, 2, 3, 4]
    let start = ContinuousClock.now
    try writeAll(fd, message)
    guard readExactly(fd, count: message.count) == message else { throw SocketFailure(description: "no echo") }
    return ContinuousClock.now - start
}

private enum ReadOutcome: Equatable {
    case data
    case endedOrReset
    case timedOut
}

/// What the next read sees; with `skippingData`, bytes still in flight are read past first.
private func readOutcome(_ fd: Int32, skippingData: Bool = false) -> ReadOutcome {
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = read(fd, &buffer, buffer.count)
        if count > 0 && skippingData { continue }
        if count > 0 { return .data }
        return count == 0 || errno == ECONNRESET ? .endedOrReset : .timedOut
    }
}

/// Threads of this process that `emulator` named (lk-TAG-accept, -read, -write).
private func emulatorThreads(_ emulator: LinkEmulator) -> Int {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
    return tasks.filter { task in
        (try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8))?.hasPrefix("lk-\(emulator.tag)-") == true
    }.count
}

private extension UInt64 {
    init(littleEndianBytes bytes: [UInt8]) {
        self = bytes.reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }
}
