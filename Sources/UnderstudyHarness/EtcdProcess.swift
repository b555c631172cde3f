import Foundation
import UnderstudySystem
import UnderstudyTransport
import UnderstudyWitness
#if canImport(Glibc)
import Glibc
#endif

/// A single-member etcd (/usr/bin/etcd, Debian's etcd-server) for one test: its own name, data
/// directory and loopback ports, so tests can run side by side. With `certificates` its client
/// port speaks TLS and requires client certificates of that CA, as a witness does in production. `stop()` (or deinit, when a test
/// fails before it) SIGKILLs it and removes the directory.
///
/// Started with a 100 ms heartbeat and a 500 ms election timeout: etcd's shortest lease is 1.5
/// election timeouts rounded up to a second, so tests may ask for 1 s leases (the default 1 s
/// election timeout makes it 2 s).
public final class EtcdProcess: @unchecked Sendable {
    public static let executable = "/usr/bin/etcd"

    public let name: String
    /// The client port on 127.0.0.1 (the v3 HTTP/JSON gateway, over TLS with `certificates`).
    public let clientPort: UInt16
    /// The name in etcd's certificate, when it serves TLS.
    public static let serverName = "witness"
    /// How a client with `node`'s certificate reaches it (nil: plain HTTP).
    public func clientTLS(node: String) -> TLSConfiguration? {
        certificates.map { TLSConfiguration(directory: $0, node: node, peer: Self.serverName) }
    }
    private let certificates: String?
    /// "127.0.0.1:<client port>".
    public var clientAddress: String { "127.0.0.1:\(clientPort)" }
    public var pid: Int32 { process.processIdentifier }
    private let directory: TemporaryDirectory
    private let process = Process()
    private let lock = NSLock()
    private var stopped = false

    public static var isInstalled: Bool { FileManager.default.isExecutableFile(atPath: executable) }

    /// Starts etcd and waits until it serves requests (it has elected itself leader).
    /// - Parameter certificates: a directory from `understudy certs init` with a node named
    ///   `EtcdProcess.serverName` (etcd's certificate) and the nodes that will be its clients;
    ///   nil: plain HTTP (tests of the client's HTTP handling only).
    public init(certificates: String? = nil, timeout: Duration = .seconds(15)) throws {
        self.certificates = certificates
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
        let client = "\(certificates == nil ? "http" : "https")://127.0.0.1:\(ports[0])"
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
        ] + (certificates.map { directory in
            ["--cert-file", "\(directory)/\(Self.serverName).pem", "--key-file", "\(directory)/\(Self.serverName).key",
             "--trusted-ca-file", "\(directory)/ca.pem", "--client-cert-auth"]
        } ?? [])
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
        let probe = EtcdClient(endpoints: [Endpoint(host: "127.0.0.1", port: clientPort)], timeout: .seconds(1),
                               tls: clientTLS(node: Self.serverName))
        var last = "no answer yet"
        while ContinuousClock.now < deadline {
            guard process.isRunning else {
                throw HarnessError("etcd exited with \(process.terminationStatus) at start: \(Self.tail(of: log))")
            }
            do {
                _ = try probe.get("/understudy/health-probe")
                return
            } catch {
                last = "\(error)"
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw HarnessError("etcd on \(clientAddress) not healthy within \(timeout) (last: \(last)): \(Self.tail(of: log))")
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
}
