import Foundation
import UnderstudySystem
import UnderstudyTransport
import UnderstudyWitness
#if canImport(Glibc)
import Glibc
#endif

/// One etcd (/usr/bin/etcd, Debian's etcd-server) for a test: a single-member cluster of its own
/// (`init(certificates:timeout:)`), or one member of an `EtcdCluster`. Each has its own name,
/// data directory and loopback ports, so tests can run side by side. With `certificates` its
/// client port speaks TLS and requires client certificates of that CA, as a witness does in
/// production (members talk to each other in plain HTTP on loopback). `stop()` (or deinit, when a
/// test fails before it) SIGKILLs it; a single etcd also removes its directory, a member keeps
/// it for `EtcdCluster.restart(member:)`.
///
/// Started with a 100 ms heartbeat and a 500 ms election timeout: etcd's shortest lease is 1.5
/// election timeouts rounded up to a second, so tests may ask for 1 s leases (the default 1 s
/// election timeout makes it 2 s).
public final class EtcdProcess: @unchecked Sendable {
    public static let executable = "/usr/bin/etcd"

    /// Where one member lives: what it is started with, the same at every restart.
    public struct Member: Sendable, Equatable {
        /// Its name in the cluster (`--name`).
        public let name: String
        /// The IPv4 address it listens on, for clients and peers: 127.0.0.1, or the address of a
        /// test's own bridge when its clients run in other network namespaces.
        public let host: String
        /// Its client port (the v3 HTTP/JSON gateway, over TLS with certificates).
        public let clientPort: UInt16
        /// Its peer port (raft between members, plain HTTP).
        public let peerPort: UInt16
        /// Its data directory's parent, which also holds its log; kept across restarts.
        public let directory: String

        public init(name: String, host: String = "127.0.0.1", clientPort: UInt16, peerPort: UInt16, directory: String) {
            self.name = name
            self.host = host
            self.clientPort = clientPort
            self.peerPort = peerPort
            self.directory = directory
        }

        /// Where its clients reach it.
        public var clientEndpoint: Endpoint { Endpoint(host: host, port: clientPort) }
        public var peerURL: String { "http://\(host):\(peerPort)" }
        /// `--initial-cluster` for these members.
        static func initialCluster(_ members: [Member]) -> String { members.map { "\($0.name)=\($0.peerURL)" }.joined(separator: ",") }
    }

    public let member: Member
    public var name: String { member.name }
    /// The client port on 127.0.0.1 (the v3 HTTP/JSON gateway, over TLS with `certificates`).
    public var clientPort: UInt16 { member.clientPort }
    /// The name in etcd's certificate, when it serves TLS.
    public static let serverName = "witness"
    /// How a client with `node`'s certificate reaches it (nil: plain HTTP).
    public func clientTLS(node: String) -> TLSConfiguration? {
        certificates.map { TLSConfiguration(directory: $0, node: node, peer: Self.serverName) }
    }
    private let certificates: String?
    /// "<host>:<client port>".
    public var clientAddress: String { member.clientEndpoint.description }
    public var pid: Int32 { process.processIdentifier }
    /// A single etcd's own directory, removed by `stop()`; nil for a cluster's member.
    private let owned: TemporaryDirectory?
    private let process = Process()
    private let log: URL
    private let lock = NSLock()
    private var stopped = false

    public static var isInstalled: Bool { FileManager.default.isExecutableFile(atPath: executable) }

    /// Starts a single-member etcd and waits until it serves requests (it has elected itself leader).
    /// - Parameter certificates: a directory from `understudy certs init` with a node named
    ///   `EtcdProcess.serverName` (etcd's certificate) and the nodes that will be its clients;
    ///   nil: plain HTTP (tests of the client's HTTP handling only).
    public convenience init(certificates: String? = nil, timeout: Duration = .seconds(15)) throws {
        let tag = String(UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(10)).lowercased()
        let directory = try TemporaryDirectory("etcd")
        let member: Member
        do {
            let ports = try Self.freeLoopbackPorts(2)
            member = Member(name: "understudy-\(tag)", clientPort: ports[0], peerPort: ports[1], directory: directory.path)
        } catch {
            directory.remove()
            throw error
        }
        try self.init(member: member, cluster: [member], certificates: certificates, owned: directory)
        do {
            try waitUntilHealthy(timeout: timeout)
        } catch {
            stop()
            throw error
        }
    }

    /// Starts `member` of `cluster` without waiting for it: a member of a new cluster answers
    /// only once a quorum of them runs. Its data directory is `member.directory`/data; one left
    /// by an earlier run is rejoined with (etcd then ignores `cluster`). The log is appended to.
    init(member: Member, cluster: [Member], certificates: String?, owned: TemporaryDirectory? = nil) throws {
        self.member = member
        self.certificates = certificates
        self.owned = owned
        log = URL(fileURLWithPath: member.directory).appendingPathComponent("etcd.log")
        let client = "\(certificates == nil ? "http" : "https")://\(member.clientEndpoint)"
        do {
            if !FileManager.default.fileExists(atPath: log.path) {
                guard FileManager.default.createFile(atPath: log.path, contents: nil) else { throw HarnessError("cannot create \(log.path)") }
            }
            process.executableURL = URL(fileURLWithPath: Self.executable)
            process.arguments = [
                "--name", member.name, "--data-dir", "\(member.directory)/data",
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", member.peerURL, "--initial-advertise-peer-urls", member.peerURL,
                "--initial-cluster", Member.initialCluster(cluster), "--initial-cluster-state", "new",
                "--heartbeat-interval", "100", "--election-timeout", "500", "--log-level", "warn",
            ] + (certificates.map { directory in
                ["--cert-file", "\(directory)/\(Self.serverName).pem", "--key-file", "\(directory)/\(Self.serverName).key",
                 "--trusted-ca-file", "\(directory)/ca.pem", "--client-cert-auth"]
            } ?? [])
            let output = try FileHandle(forWritingTo: log)
            output.seekToEndOfFile()
            process.standardOutput = output
            process.standardError = output
            try process.run()
            try output.close()
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

    /// Kills etcd (SIGKILL, also when paused); a single etcd's directory goes with it, a member's
    /// stays. Idempotent.
    public func stop() {
        lock.lock()
        defer { lock.unlock() }
        guard !stopped else { return }
        stopped = true
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
        }
        owned?.remove()
    }

    /// Waits until this member serves a read, which takes a leader and a quorum behind it.
    func waitUntilHealthy(timeout: Duration) throws {
        let deadline = ContinuousClock.now + timeout
        let probe = EtcdClient(endpoints: [member.clientEndpoint], timeout: .seconds(1),
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
    static func freeLoopbackPorts(_ count: Int) throws -> [UInt16] {
        var sockets: [Int32] = []
        defer { sockets.forEach { close($0) } }
        var ports: [UInt16] = []
        for _ in 0..<count {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw HarnessError("socket: \(String(cString: strerror(errno)))") }
            sockets.append(fd)
            var address = LoopbackPorts.address(port: 0)
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
}
