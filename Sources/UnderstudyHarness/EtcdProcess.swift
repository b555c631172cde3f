import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A single-member etcd (/usr/bin/etcd, Debian's etcd-server) for one test: its own name, data
/// directory and loopback ports, so tests can run side by side. `stop()` (or deinit, when a test
/// fails before it) SIGKILLs it and removes the directory.
///
/// Started with a 100 ms heartbeat and a 500 ms election timeout: etcd's shortest lease is 1.5
/// election timeouts rounded up to a second, so tests may ask for 1 s leases (the default 1 s
/// election timeout makes it 2 s).
public final class EtcdProcess: @unchecked Sendable {
    public static let executable = "/usr/bin/etcd"

    public let name: String
    /// The client port on 127.0.0.1 (HTTP: the v3 gateway).
    public let clientPort: UInt16
    /// "127.0.0.1:<client port>".
    public var clientAddress: String { "127.0.0.1:\(clientPort)" }
    public var pid: Int32 { process.processIdentifier }
    private let directory: TemporaryDirectory
    private let process = Process()
    private let lock = NSLock()
    private var stopped = false

    public static var isInstalled: Bool { FileManager.default.isExecutableFile(atPath: executable) }

    /// Starts etcd and waits until it answers /health (it has elected itself leader).
    public init(timeout: Duration = .seconds(15)) throws {
        let tag = String(UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(10)).lowercased()
        name = "understudy-\(tag)"
        directory = try TemporaryDirectory("etcd")
        let ports: [UInt16]
        do {
            ports = try Self.freeLoopbackPorts(2)
        } catch {
            directory.remove()
            throw error
        }
        clientPort = ports[0]
        let client = "http://127.0.0.1:\(ports[0])"
        let peer = "http://127.0.0.1:\(ports[1])"
        let log = URL(fileURLWithPath: directory.path).appendingPathComponent("etcd.log")
        guard FileManager.default.createFile(atPath: log.path, contents: nil) else {
            directory.remove()
            throw HarnessError("cannot create \(log.path)")
        }
        process.executableURL = URL(fileURLWithPath: Self.executable)
        process.arguments = [
            "--name", name, "--data-dir", "\(directory.path)/data",
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", "\(name)=\(peer)", "--initial-cluster-state", "new",
            "--heartbeat-interval", "100", "--election-timeout", "500", "--log-level", "warn",
        ]
        let output = try FileHandle(forWritingTo: log)
        process.standardOutput = output
        process.standardError = output
        do {
            try process.run()
            try output.close()
            try waitUntilHealthy(timeout: timeout, log: log)
        } catch {
            stop()
            throw error
        }
    }

    deinit { stop() }

    /// SIGSTOP: etcd stops answering (connections are still accepted by the kernel, replies never
    /// come) and its lease clock stops too, as a hung or partitioned witness would look.
    public func pause() { kill(pid, SIGSTOP) }

    /// SIGCONT after `pause`.
    public func resume() { kill(pid, SIGCONT) }

    /// Kills etcd (SIGKILL, also when paused) and removes its data directory. Idempotent.
    public func stop() {
        lock.lock()
        defer { lock.unlock() }
        guard !stopped else { return }
        stopped = true
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
        }
        directory.remove()
    }

    private func waitUntilHealthy(timeout: Duration, log: URL) throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard process.isRunning else {
                throw HarnessError("etcd exited with \(process.terminationStatus) at start: \(Self.tail(of: log))")
            }
            if let reply = Self.get("/health", port: clientPort), reply.contains("\"health\":\"true\"") { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw HarnessError("etcd on \(clientAddress) not healthy within \(timeout): \(Self.tail(of: log))")
    }

    private static func tail(of log: URL) -> String {
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        return String(text.suffix(2000))
    }

    /// Ports the kernel hands out for port 0, all held until every one is chosen so none repeats.
    private static func freeLoopbackPorts(_ count: Int) throws -> [UInt16] {
        var sockets: [Int32] = []
        defer { sockets.forEach { close($0) } }
        var ports: [UInt16] = []
        for _ in 0..<count {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw HarnessError("socket: \(String(cString: strerror(errno)))") }
            sockets.append(fd)
            var address = loopback(port: 0)
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            // Safe: both calls see exactly one sockaddr_in, which `address` holds for their duration.
            let status = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 ? getsockname(fd, $0, &length) : -1 }
            }
            guard status == 0 else { throw HarnessError("bind 127.0.0.1:0: \(String(cString: strerror(errno)))") }
            ports.append(UInt16(bigEndian: address.sin_port))
        }
        return ports
    }

    private static func loopback(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return address
    }

    /// A plain GET on 127.0.0.1:`port`: the reply's text, or nil while nothing answers (within 1 s).
    private static func get(_ path: String, port: UInt16) -> String? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var limit = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        var address = loopback(port: port)
        // Safe: connect reads one sockaddr_in, which `address` holds for the call.
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return nil }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
        // Safe: send reads `request.count` bytes of the array, alive during the call.
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else { return nil }
        var reply: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            // Safe: recv writes at most `buffer.count` bytes into the array's storage.
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            guard n > 0 else { break }
            reply += buffer[..<n]
        }
        return reply.isEmpty ? nil : String(decoding: reply, as: UTF8.self)
    }
}
