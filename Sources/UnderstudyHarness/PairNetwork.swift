import UnderstudySystem
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A private layer-2 network standing in for the LAN of an HA pair, on one machine: a bridge in
/// this namespace with no address of its own, a TAP device per node for its agent to attach the
/// guest's NIC to, and a client namespace joined to the bridge by a veth pair. All names carry a
/// tag, and `remove()` deletes everything, so several can exist side by side (tests, the demo).
///
/// Without `nodeNamespaces` the TAPs are ports of the bridge here, and the agents run in this
/// namespace and talk over loopback. With it, each node gets a network namespace of its own
/// standing in for its host: its TAP and its uplink (a veth pair to the LAN bridge) are ports of
/// a bridge inside, which also carries the node's address (`nodeAddresses`), so the agents
/// replicate over the same LAN the guest answers on, and killing one "host" leaves the other's
/// network intact.
public final class PairNetwork: @unchecked Sendable {
    public let tag: String
    /// The client's namespace.
    public let namespace: String
    public let bridge: String
    /// One TAP per node, by the name its agent's `network.tap` gives.
    public let taps: [String]
    /// Each node's namespace (empty without `nodeNamespaces`).
    public let nodeNamespaces: [String]
    /// Each node's address on the LAN (empty without `nodeNamespaces`).
    public let nodeAddresses: [String]
    private let vethHost: String
    private let uplinks: [String]
    public let clientAddress = "10.77.0.1"
    public let guestAddress = "10.77.0.2"
    public let prefixLength = 24

    /// Creates the client namespace, the bridge and `tapCount` TAPs (persistent, so that an agent
    /// attaches by name later, as it would to a TAP an operator bridged), each in a node namespace
    /// of its own with `nodeNamespaces`. `tag` (at most 7 characters: interface names are short)
    /// defaults to a random one.
    public init(tapCount: Int, nodeNamespaces: Bool = false, tag: String? = nil) throws {
        let tag = tag ?? String(UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(7)).lowercased()
        precondition(tag.count <= 7, "interface names hold at most 15 characters")
        self.tag = tag
        namespace = "usnet-\(tag)"
        bridge = "usbr\(tag)"
        vethHost = "usvh\(tag)"
        taps = (0..<tapCount).map { "ust\(tag)\($0)" }
        self.nodeNamespaces = nodeNamespaces ? (0..<tapCount).map { "usnode-\(tag)-\($0)" } : []
        nodeAddresses = nodeNamespaces ? (0..<tapCount).map { "10.77.0.\(11 + $0)" } : []
        uplinks = nodeNamespaces ? (0..<tapCount).map { "usup\(tag)\($0)" } : []
        do {
            try Self.ip(["netns", "add", namespace])
            try Self.ip(["link", "add", bridge, "type", "bridge"])
            Self.quietIPv6(bridge)
            try Self.ip(["link", "set", bridge, "up"])
            if nodeNamespaces {
                for index in taps.indices { try addNode(index) }
            } else {
                for tap in taps {
                    try Self.ip(["tuntap", "add", "dev", tap, "mode", "tap"])
                    Self.quietIPv6(tap)
                    try Self.ip(["link", "set", tap, "master", bridge, "up"])
                }
            }
            try Self.ip(["link", "add", vethHost, "type", "veth", "peer", "name", "client0", "netns", namespace])
            Self.quietIPv6(vethHost)
            try Self.ip(["link", "set", vethHost, "master", bridge, "up"])
            try Self.ip(["-n", namespace, "addr", "add", "\(clientAddress)/\(prefixLength)", "dev", "client0"])
            try Self.ip(["-n", namespace, "link", "set", "client0", "up"])
            try Self.ip(["-n", namespace, "link", "set", "lo", "up"])
        } catch {
            remove()
            throw error
        }
    }

    /// Node `index`'s namespace: `lan0` (a veth pair's end, the other on the LAN bridge) and the
    /// node's TAP on a bridge `br0` that holds the node's address.
    private func addNode(_ index: Int) throws {
        let node = nodeNamespaces[index]
        try Self.ip(["netns", "add", node])
        // The interfaces made in there next inherit "default": no IPv6 chatter from the node either.
        try Self.ip(["netns", "exec", node, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])
        try Self.ip(["link", "add", uplinks[index], "type", "veth", "peer", "name", "lan0", "netns", node])
        Self.quietIPv6(uplinks[index])
        try Self.ip(["link", "set", uplinks[index], "master", bridge, "up"])
        for command in [["link", "add", "br0", "type", "bridge"], ["tuntap", "add", "dev", taps[index], "mode", "tap"],
                        ["link", "set", "lan0", "master", "br0", "up"], ["link", "set", taps[index], "master", "br0", "up"],
                        ["addr", "add", "\(nodeAddresses[index])/\(prefixLength)", "dev", "br0"], ["link", "set", "br0", "up"],
                        ["link", "set", "lo", "up"]] {
            try Self.ip(["-n", node] + command)
        }
    }

    /// The guest's address and gateway for the test initramfs's kernel command line.
    public var guestCommandLine: String { "understudy.ip=\(guestAddress)/\(prefixLength)" }

    /// Deletes the namespaces (and with them the veth pairs and the node's TAPs), the TAPs and the
    /// bridge. Idempotent.
    public func remove() {
        _ = try? Self.ip(["netns", "delete", namespace])
        for (node, tap) in zip(nodeNamespaces, taps) {
            // A persistent TAP is not tied to its namespace's lifetime the way a veth is: delete it by name.
            _ = try? Self.ip(["-n", node, "link", "delete", tap])
            _ = try? Self.ip(["netns", "delete", node])
        }
        if nodeNamespaces.isEmpty {
            for tap in taps { _ = try? Self.ip(["link", "delete", tap]) }
        }
        for link in uplinks + [vethHost, bridge] { _ = try? Self.ip(["link", "delete", link]) }
    }

    /// Moves the calling thread into the client namespace: sockets it opens from now on are there.
    /// Call only on a thread of its own (a `Thread` made for it), never on a shared pool thread.
    public func enterClientNamespace() throws {
        try NetworkNamespace.enter(namespace)
    }

    /// Disables IPv6 on a host-side interface so that it sends no router solicitations or
    /// duplicate-address probes of its own into the pair's network.
    private static func quietIPv6(_ interface: String) {
        try? "1".write(toFile: "/proc/sys/net/ipv6/conf/\(interface)/disable_ipv6", atomically: false, encoding: .utf8)
    }

    private static func ip(_ arguments: [String]) throws { try HostCommand.run(["ip"] + arguments) }
}
