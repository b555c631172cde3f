import Foundation
import Synchronization
import Testing
import UnderstudyHarness
import UnderstudyProtocol
import UnderstudySystem
import UnderstudyTransport
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Certificates

/// A temporary directory holding a fresh CA and credentials for `nodes` in `<tmp>/certs`.
func withCertificates<R>(nodes: [String] = ["a", "b"], _ body: (String) throws -> R) throws -> R {
    try withTemporaryDirectory("transport-test") { root in
        let certs = "\(root)/certs"
        try CertificateAuthority.initialize(directory: certs, nodes: nodes)
        return try body(certs)
    }
}

func serverContext(_ dir: String, node: String = "b", peer: String = "a") throws -> TLSContext {
    try TLSContext(role: .server, configuration: TLSConfiguration(directory: dir, node: node, peer: peer))
}

func clientContext(_ dir: String, node: String = "a", peer: String = "b") throws -> TLSContext {
    try TLSContext(role: .client, configuration: TLSConfiguration(directory: dir, node: node, peer: peer))
}

func localListener() throws -> TCPListener {
    try TCPListener(endpoint: Endpoint(host: "127.0.0.1", port: 0))
}

// MARK: - Background threads

/// The outcome of a body run on its own `JoinableThread`, waited for with a deadline so that a
/// bug shows up as a failed expectation instead of a hung test run.
final class Background<T: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private var outcome: Result<T, any Error>?
    private var thread: JoinableThread?

    init(_ name: String = "test-background", _ body: @escaping @Sendable () throws -> T) {
        let started = JoinableThread(name: name) { [self] in
            let result = Result { try body() }
            condition.lock()
            outcome = result
            condition.broadcast()
            condition.unlock()
        }
        condition.lock()
        thread = started
        condition.unlock()
    }

    var isFinished: Bool {
        condition.lock()
        defer { condition.unlock() }
        return outcome != nil
    }

    /// The result, or nil (recording an issue) when the body has not finished within `seconds`.
    func result(within seconds: Double = 10, sourceLocation: SourceLocation = #_sourceLocation) -> Result<T, any Error>? {
        let deadline = Date(timeIntervalSinceNow: seconds)
        condition.lock()
        while outcome == nil {
            if !condition.wait(until: deadline) { break }
        }
        let result = outcome
        let finished = thread
        if result != nil { thread = nil }
        condition.unlock()
        guard let result else {
            Issue.record("background thread did not finish within \(seconds) s", sourceLocation: sourceLocation)
            return nil
        }
        finished?.join()
        return result
    }

    /// The value, throwing the body's error (or a timeout) instead.
    func value(within seconds: Double = 10, sourceLocation: SourceLocation = #_sourceLocation) throws -> T {
        guard let result = result(within: seconds, sourceLocation: sourceLocation) else {
            throw TestTimeout()
        }
        return try result.get()
    }

    /// The error the body threw, nil (recording an issue) when it succeeded or hung.
    func error(within seconds: Double = 10, sourceLocation: SourceLocation = #_sourceLocation) -> (any Error)? {
        switch result(within: seconds, sourceLocation: sourceLocation) {
        case .failure(let error): return error
        case .success(let value):
            Issue.record("expected the background body to fail, it returned \(value)", sourceLocation: sourceLocation)
            return nil
        case nil: return nil
        }
    }
}

struct TestTimeout: Error {}

/// A counter shared between threads.
final class Counter: Sendable {
    private let value = Atomic<Int>(0)
    func increment() { value.add(1, ordering: .sequentiallyConsistent) }
    var current: Int { value.load(ordering: .sequentiallyConsistent) }
}

// MARK: - Connecting

/// Outcome of one TLS handshake attempt between a fresh listener's server side and a client.
struct HandshakeOutcome {
    let client: Result<TLSStream, TransportError>
    let server: Result<TLSStream, any Error>
    let endpoint: Endpoint
}

/// Accepts one connection on a background thread with `server` and connects to it with `client`.
func handshake(server: TLSContext, client: TLSContext, timeoutMilliseconds: Int32 = 5000,
               configureAccepted: @escaping @Sendable (Int32) -> Void = { _ in },
               sourceLocation: SourceLocation = #_sourceLocation) throws -> HandshakeOutcome {
    let listener = try localListener()
    let accepting = Background("test-accept") { () throws -> TLSStream in
        let (fd, peer) = try listener.accept()
        configureAccepted(fd)
        return try TLSStream.accept(fd: fd, peer: peer, context: server, timeoutMilliseconds: timeoutMilliseconds)
    }
    let clientResult = Result { () throws(TransportError) -> TLSStream in
        try TLSStream.connect(to: listener.endpoint, context: client, timeoutMilliseconds: timeoutMilliseconds)
    }
    if case .failure(.connectFailed) = clientResult { listener.close() }
    guard let serverResult = accepting.result(within: 15, sourceLocation: sourceLocation) else {
        listener.close()
        throw TestTimeout()
    }
    return HandshakeOutcome(client: clientResult, server: serverResult, endpoint: listener.endpoint)
}

/// A connected pair of frame connections (client "a" ↔ server "b" unless told otherwise).
func connectedPair(_ dir: String, configureAccepted: @escaping @Sendable (Int32) -> Void = { _ in })
    throws -> (client: FrameConnection, server: FrameConnection) {
    let outcome = try handshake(server: serverContext(dir), client: clientContext(dir), configureAccepted: configureAccepted)
    let client = try outcome.client.get()
    let server = try outcome.server.get()
    return (FrameConnection(stream: client), FrameConnection(stream: server))
}

// MARK: - Errors

extension Error {
    var transportError: TransportError? { self as? TransportError }

    /// The reason of a `.handshakeFailed`, nil for any other error.
    var handshakeReason: String? {
        if case .handshakeFailed(_, let reason)? = self as? TransportError { return reason }
        return nil
    }

    /// The text of a `.closed`, nil for any other error.
    var closedReason: String? {
        if case .closed(let what)? = self as? TransportError { return what }
        return nil
    }

    var credentialsReason: String? {
        if case .credentials(let what)? = self as? TransportError { return what }
        return nil
    }
}

extension Result {
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}

// MARK: - Raw sockets

/// A plain (non-TLS) TCP connection to 127.0.0.1:`port`, blocking, with a receive timeout.
func rawConnect(port: UInt16, receiveTimeoutSeconds: Int = 5) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TransportError.system(operation: "socket", errno: errno) }
    var address = loopbackAddress(port: port)
    let status = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard status == 0 else {
        let saved = errno
        close(fd)
        throw TransportError.system(operation: "connect", errno: saved)
    }
    var timeout = timeval(tv_sec: receiveTimeoutSeconds, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    return fd
}

func loopbackAddress(port: UInt16) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return address
}

func rawWrite(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var written = 0
    while written < bytes.count {
        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + written, bytes.count - written, Int32(MSG_NOSIGNAL)) }
        guard n > 0 else { return false }
        written += n
    }
    return true
}

/// Reads until end of stream. Returns the bytes and whether the stream really ended (false on
/// timeout); a connection reset also counts as the end.
func rawReadToEnd(_ fd: Int32) -> (bytes: [UInt8], ended: Bool) {
    var result: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
        if n > 0 {
            result += buffer[0..<n]
        } else if n == 0 {
            return (result, true)
        } else {
            let saved = errno
            if saved == EINTR { continue }
            return (result, saved == ECONNRESET)
        }
    }
}

// MARK: - Payloads

/// `count` bytes of a pattern that differs with `seed` (so that swapped payloads are noticed).
func patternBytes(count: Int, seed: UInt64) -> [UInt8] {
    precondition(count % 8 == 0)
    return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        let words = UnsafeMutableRawBufferPointer(buffer).bindMemory(to: UInt64.self)
        var state = seed &+ 0x9E37_79B9_7F4A_7C15
        for i in 0..<words.count {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            words[i] = state ^ UInt64(i)
        }
        initialized = count
    }
}
