import Foundation
import UnderstudySystem
#if canImport(Glibc)
import Glibc
#endif

/// The hosts of a fleet on one machine: a network namespace per host, standing in for a
/// hypervisor host, each joined by a veth pair (`eth0` inside) to a management LAN. The LAN is a
/// bridge in this namespace holding `serviceAddress`, where the fleet's shared services (the
/// etcd cluster) listen; each host has its own address on it. Agents started in a host's
/// namespace replicate to each other over that LAN; the VMs' guest networks are `PairNetwork`s
/// with their TAPs inside the hosts (`PairNetwork(hostNamespaces:)`).
///
/// `kill(host:)` SIGKILLs every process in a host's namespace, as the host losing power would.
/// `remove()` deletes the namespaces and links; everything carries the tag, and the subnet
/// (10.78.N.0/24) is chosen from this process's pid, so fleets of two processes can coexist.
public final class FleetHosts: @unchecked Sendable {
    public let hosts: [String]
    /// The management LAN's bridge, here.
    public let bridge: String
    /// The address of this namespace on the management LAN.
    public let serviceAddress: String
    public let prefixLength = 24
    private let tag: String
    private let subnet: String

    /// Creates the bridge and one namespace per host. `tag` at most 7 characters (interface names).
    public init(hosts: [String], tag: String) throws {
        precondition(tag.count <= 7 && hosts.count < 200, "interface names hold at most 15 characters")
        self.hosts = hosts
        self.tag = tag
        bridge = "usfb\(tag)"
        subnet = "10.78.\(Int(getpid()) % 250 + 1)"
        serviceAddress = "\(subnet).254"
        do {
            try PairNetwork.ip(["link", "add", bridge, "type", "bridge"])
            PairNetwork.quietIPv6(bridge)
            try PairNetwork.ip(["addr", "add", "\(serviceAddress)/\(prefixLength)", "dev", bridge])
            try PairNetwork.ip(["link", "set", bridge, "up"])
            for host in hosts { try add(host) }
        } catch {
            remove()
            throw error
        }
    }

    /// The network namespace standing in for `host`.
    public func namespace(of host: String) -> String { "usfh-\(tag)-\(host)" }

    /// `host`'s address on the management LAN.
    public func address(of host: String) -> String { "\(subnet).\(index(of: host) + 1)" }

    private func index(of host: String) -> Int {
        guard let index = hosts.firstIndex(of: host) else { preconditionFailure("\(host) is not one of \(hosts)") }
        return index
    }

    private func uplink(of host: String) -> String { "usfh\(tag)\(index(of: host))" }

    private func add(_ host: String) throws {
        let namespace = namespace(of: host)
        try PairNetwork.addQuietNamespace(namespace)
        try PairNetwork.ip(["link", "add", uplink(of: host), "type", "veth", "peer", "name", "eth0", "netns", namespace])
        PairNetwork.quietIPv6(uplink(of: host))
        try PairNetwork.ip(["link", "set", uplink(of: host), "master", bridge, "up"])
        for command in [["addr", "add", "\(address(of: host))/\(prefixLength)", "dev", "eth0"], ["link", "set", "eth0", "up"],
                        ["link", "set", "lo", "up"]] {
            try PairNetwork.ip(["-n", namespace] + command)
        }
    }

    /// The processes in `host`'s namespace now.
    public func processes(on host: String) -> [Int32] {
        let output = (try? HostCommand.run(["ip", "netns", "pids", namespace(of: host)])) ?? ""
        return output.split(whereSeparator: \.isWhitespace).compactMap { Int32($0) }
    }

    /// SIGKILLs every process in `host`'s namespace, again until none is left (one may have been
    /// forking as the others died); returns how many it killed.
    @discardableResult
    public func kill(host: String) -> Int {
        var killed = Set<Int32>()
        for _ in 0..<50 {
            let running = processes(on: host)
            if running.isEmpty { break }
            for pid in running where Glibc.kill(pid, SIGKILL) == 0 { killed.insert(pid) }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return killed.count
    }

    /// Kills what runs in the hosts, deletes their namespaces (and so their veth pairs) and the
    /// bridge. Idempotent.
    public func remove() {
        for host in hosts {
            kill(host: host)
            _ = try? PairNetwork.ip(["netns", "delete", namespace(of: host)])
            _ = try? PairNetwork.ip(["link", "delete", uplink(of: host)])
        }
        _ = try? PairNetwork.ip(["link", "delete", bridge])
    }
}
