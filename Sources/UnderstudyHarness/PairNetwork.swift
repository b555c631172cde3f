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
/// network intact. `init(hostNamespaces:)` puts each node's TAP, bridge and uplink in a host
/// namespace that exists already and may carry other VMs' networks (a fleet's hosts): the
/// names inside carry the tag, and the host's own address is on another network.
public final class PairNetwork: @unchecked Sendable {
    public let tag: String
    /// The client's namespace.
    public let namespace: String
    public let bridge: String
    /// One TAP per node, by the name its agent's `network.tap` gives.
    public let taps: [String]
    /// Each node's namespace (empty without `nodeNamespaces` or `hostNamespaces`).
    public let nodeNamespaces: [String]
    /// Each node's address on the LAN (empty without `nodeNamespaces`).
    public let nodeAddresses: [String]
    /// Whether this network made the node namespaces (and so deletes them).
    private let ownsNodeNamespaces: Bool
    private let vethHost: String
    private let uplinks: [String]
    /// The names, inside each node namespace, of its end of the uplink and of its bridge.
    private let nodeUplink: String
    private let nodeBridge: String
    public let clientAddress = "10.77.0.1"
    public let guestAddress = "10.77.0.2"
    public let prefixLength = 24

    /// Creates the client namespace, the bridge and `tapCount` TAPs (persistent, so that an agent
    /// attaches by name later, as it would to a TAP an operator bridged), each in a node namespace
    /// of its own with `nodeNamespaces`. `tag` (at most 7 characters: interface names are short)
    /// defaults to a random one.
    public convenience init(tapCount: Int, nodeNamespaces: Bool = false, tag: String? = nil) throws {
        let tag = tag ?? Self.randomTag()
        try self.init(tapCount: tapCount, tag: tag, nodeNamespaces: nodeNamespaces ? (0..<tapCount).map { "usnode-\(tag)-\($0)" } : [],
                      ownsNodeNamespaces: true)
    }

    /// Creates the client namespace and the bridge, and in each of `hostNamespaces` (one per
    /// node, made by the caller, who also deletes them) the node's TAP on a bridge of its own with
    /// an uplink to the LAN bridge.
    public convenience init(hostNamespaces: [String], tag: String? = nil) throws {
        try self.init(tapCount: hostNamespaces.count, tag: tag ?? Self.randomTag(), nodeNamespaces: hostNamespaces, ownsNodeNamespaces: false)
    }

    private init(tapCount: Int, tag: String, nodeNamespaces: [String], ownsNodeNamespaces: Bool) throws {
        precondition(tag.count <= 7, "interface names hold at most 15 characters")
        precondition(nodeNamespaces.isEmpty || nodeNamespaces.count == tapCount)
        self.tag = tag
        namespace = "usnet-\(tag)"
        bridge = "usbr\(tag)"
        vethHost = "usvh\(tag)"
        taps = (0..<tapCount).map { "ust\(tag)\($0)" }
        self.nodeNamespaces = nodeNamespaces
        self.ownsNodeNamespaces = ownsNodeNamespaces
        nodeAddresses = ownsNodeNamespaces ? nodeNamespaces.indices.map { "10.77.0.\(11 + $0)" } : []
        uplinks = nodeNamespaces.indices.map { "usup\(tag)\($0)" }
        nodeUplink = "lan\(tag)"
        nodeBridge = "br\(tag)"
        do {
            try Self.ip(["netns", "add", namespace])
            try Self.ip(["link", "add", bridge, "type", "bridge"])
            Self.quietIPv6(bridge)
            try Self.ip(["link", "set", bridge, "up"])
            if !nodeNamespaces.isEmpty {
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

    /// Node `index`'s namespace (made here when this network owns it): `lan<tag>` (a veth
    /// pair's end, the other on the LAN bridge) and the node's TAP on a bridge `br<tag>`, which
    /// holds the node's address when there is one.
    private func addNode(_ index: Int) throws {
        let node = nodeNamespaces[index]
        if ownsNodeNamespaces { try Self.addQuietNamespace(node) }
        try Self.ip(["link", "add", uplinks[index], "type", "veth", "peer", "name", nodeUplink, "netns", node])
        Self.quietIPv6(uplinks[index])
        try Self.ip(["link", "set", uplinks[index], "master", bridge, "up"])
        var commands = [["link", "add", nodeBridge, "type", "bridge"], ["tuntap", "add", "dev", taps[index], "mode", "tap"],
                        ["link", "set", nodeUplink, "master", nodeBridge, "up"], ["link", "set", taps[index], "master", nodeBridge, "up"],
                        ["link", "set", nodeBridge, "up"], ["link", "set", "lo", "up"]]
        if index < nodeAddresses.count { commands.append(["addr", "add", "\(nodeAddresses[index])/\(prefixLength)", "dev", nodeBridge]) }
        for command in commands { try Self.ip(["-n", node] + command) }
    }

    /// Makes network namespace `name`, in which interfaces made later send no IPv6 of their own
    /// (they inherit "default": no router solicitations or address probes from a "host").
    static func addQuietNamespace(_ name: String) throws {
        try ip(["netns", "add", name])
        try ip(["netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])
    }

    private static func randomTag() -> String {
        String(UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(7)).lowercased()
    }

    /// The guest's address and gateway for the test initramfs's kernel command line.
    public var guestCommandLine: String { "understudy.ip=\(guestAddress)/\(prefixLength)" }

    /// Deletes the namespaces it made (and with them the veth pairs and the node's TAPs), the
    /// TAPs and bridges, and the bridge. Idempotent.
    public func remove() {
        _ = try? Self.ip(["netns", "delete", namespace])
        for (node, tap) in zip(nodeNamespaces, taps) {
            // A persistent TAP is not tied to its namespace's lifetime the way a veth is: delete it by name.
            _ = try? Self.ip(["-n", node, "link", "delete", tap])
            if ownsNodeNamespaces {
                _ = try? Self.ip(["netns", "delete", node])
            } else {
                _ = try? Self.ip(["-n", node, "link", "delete", nodeBridge])
            }
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
    static func quietIPv6(_ interface: String) {
        try? "1".write(toFile: "/proc/sys/net/ipv6/conf/\(interface)/disable_ipv6", atomically: false, encoding: .utf8)
    }

    static func ip(_ arguments: [String]) throws { try HostCommand.run(["ip"] + arguments) }
}
