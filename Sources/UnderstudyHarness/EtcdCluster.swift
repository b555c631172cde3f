import Foundation
import UnderstudySystem
import UnderstudyTransport
import UnderstudyWitness

/// A three-member (or any odd size) etcd cluster on one address (loopback by default) for one test, as a fleet runs its
/// witness and registry: each member an `EtcdProcess` with its own name, ports and data
/// directory, TLS on the client ports like a single `EtcdProcess`. `kill(member:)` and
/// `restart(member:)` take one member away and bring it back with its data; `stop()` (or deinit,
/// when a test fails first) kills them all and removes every directory.
public final class EtcdCluster: @unchecked Sendable {
    public let members: [EtcdProcess.Member]
    private let certificates: String?
    private let directory: TemporaryDirectory
    private let lock = NSLock()
    /// The running process of each member; nil while it is killed.
    private var processes: [EtcdProcess?]
    private var stopped = false

    /// Starts `size` members and waits until each serves reads (a leader is elected and they all joined).
    /// - Parameter certificates: as for `EtcdProcess`: a directory from `understudy certs init`
    ///   with a node named `EtcdProcess.serverName`, whose certificate every member serves.
    /// - Parameter host: the address every member listens on (as `EtcdProcess.Member.host`).
    public init(size: Int = 3, host: String = "127.0.0.1", certificates: String? = nil, timeout: Duration = .seconds(30)) throws {
        precondition(size >= 1)
        self.certificates = certificates
        directory = try TemporaryDirectory("etcd-cluster")
        let tag = String(UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(8)).lowercased()
        var members: [EtcdProcess.Member] = []
        do {
            let ports = try EtcdProcess.freeLoopbackPorts(2 * size)
            for index in 0..<size {
                let path = "\(directory.path)/\(index)"
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
                members.append(EtcdProcess.Member(name: "understudy-\(tag)-\(index)", host: host, clientPort: ports[2 * index],
                                                  peerPort: ports[2 * index + 1], directory: path))
            }
        } catch {
            directory.remove()
            throw error
        }
        self.members = members
        processes = Array(repeating: nil, count: size)
        do {
            // All of them first: none answers before a quorum runs.
            for index in members.indices {
                processes[index] = try EtcdProcess(member: members[index], cluster: members, certificates: certificates)
            }
            let deadline = ContinuousClock.now + timeout
            for process in processes {
                try process?.waitUntilHealthy(timeout: max(.zero, deadline - .now))
            }
        } catch {
            stop()
            throw error
        }
    }

    deinit { stop() }

    /// Every member's client endpoint, in member order: what a node's `endpoints` lists.
    public var endpoints: [Endpoint] { members.map(\.clientEndpoint) }

    /// How a client with `node`'s certificate reaches the members (nil: plain HTTP).
    public func clientTLS(node: String) -> TLSConfiguration? {
        certificates.map { TLSConfiguration(directory: $0, node: node, peer: EtcdProcess.serverName) }
    }

    /// Whether `member` (an index into `members`) runs now.
    public func isRunning(member index: Int) -> Bool {
        lock.withLock { processes[index] != nil }
    }

    /// SIGKILLs `member`, keeping its data for `restart(member:)`.
    public func kill(member index: Int) {
        let process = lock.withLock { () -> EtcdProcess? in
            defer { processes[index] = nil }
            return processes[index]
        }
        process?.stop()
    }

    /// Starts a killed `member` again on its ports and data, and waits until it serves reads,
    /// which it does once it has caught up with the leader.
    public func restart(member index: Int, timeout: Duration = .seconds(30)) throws {
        let process = try lock.withLock { () throws -> EtcdProcess in
            guard !stopped else { throw HarnessError("the etcd cluster is stopped") }
            guard processes[index] == nil else { throw HarnessError("etcd member \(members[index].name) runs already") }
            let process = try EtcdProcess(member: members[index], cluster: members, certificates: certificates)
            processes[index] = process
            return process
        }
        try process.waitUntilHealthy(timeout: timeout)
    }

    /// Which member leads now, as the running members report it (nil: none knows a leader).
    /// etcd answers a status request without a quorum, so this also works during an election.
    public func leader() -> Int? {
        var ids: [Int: UInt64] = [:]
        var leaders: Set<UInt64> = []
        for index in members.indices where isRunning(member: index) {
            let client = EtcdClient(endpoints: [endpoints[index]], timeout: .seconds(1), tls: clientTLS(node: EtcdProcess.serverName))
            guard let status = try? client.status() else { continue }
            ids[index] = status.member
            if status.leader != 0 { leaders.insert(status.leader) }
        }
        guard leaders.count == 1, let leader = leaders.first else { return nil }
        return ids.first { $0.value == leader }?.key
    }

    /// Kills every member and removes every directory. Idempotent.
    public func stop() {
        let running = lock.withLock { () -> [EtcdProcess] in
            stopped = true
            defer { processes = processes.map { _ in nil } }
            return processes.compactMap { $0 }
        }
        running.forEach { $0.stop() }
        directory.remove()
    }
}
