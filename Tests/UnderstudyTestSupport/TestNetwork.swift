import CUnderstudyShims
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A private layer-2 network for one test, standing in for the LAN of an HA pair: a bridge in the
/// host namespace with no address (frames only move between its own ports), TAP devices for the
/// agents to attach to, and a client namespace joined to the bridge by a veth pair. All names are
/// unique to the test, and `remove()` deletes everything, so tests can run side by side.
public final class TestNetwork: @unchecked Sendable {
    public let tag: String
    public let namespace: String
    public let bridge: String
    public let taps: [String]
    private let vethHost: String
    public let clientAddress = "10.77.0.1"
    public let guestAddress = "10.77.0.2"
    public let prefixLength = 24

    /// Creates the namespace, the bridge and `tapCount` TAPs (persistent, so that an agent or QEMU
    /// attaches by name later, as it would to a TAP an operator bridged).
    public init(tapCount: Int) throws {
        let tag = String(UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(7)).lowercased()
        self.tag = tag
        namespace = "usnet-\(tag)"
        bridge = "usbr\(tag)"
        vethHost = "usvh\(tag)"
        taps = (0..<tapCount).map { "ust\(tag)\($0)" }
        do {
            try Self.ip(["netns", "add", namespace])
            try Self.ip(["link", "add", bridge, "type", "bridge"])
            Self.quietIPv6(bridge)
            try Self.ip(["link", "set", bridge, "up"])
            for tap in taps {
                try Self.ip(["tuntap", "add", "dev", tap, "mode", "tap"])
                Self.quietIPv6(tap)
                try Self.ip(["link", "set", tap, "master", bridge, "up"])
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

    /// The guest's address and gateway for the test initramfs's kernel command line.
    public var guestCommandLine: String { "understudy.ip=\(guestAddress)/\(prefixLength)" }

    /// Deletes the namespace (and with it the veth pair), the TAPs and the bridge. Idempotent.
    public func remove() {
        _ = try? Self.ip(["netns", "delete", namespace])
        for tap in taps { _ = try? Self.ip(["link", "delete", tap]) }
        _ = try? Self.ip(["link", "delete", vethHost])
        _ = try? Self.ip(["link", "delete", bridge])
    }

    /// Moves the calling thread into the client namespace: sockets it opens from now on are there.
    /// Call only on a thread of its own (a `Thread` made for it), never on a shared pool thread.
    public func enterClientNamespace() throws {
        guard us_enter_network_namespace("/var/run/netns/\(namespace)") == 0 else {
            throw TestSupportError("cannot enter network namespace \(namespace): \(String(cString: strerror(errno)))")
        }
    }

    /// Disables IPv6 on a host-side interface so that it sends no router solicitations or
    /// duplicate-address probes of its own into the test's network.
    private static func quietIPv6(_ interface: String) {
        try? "1".write(toFile: "/proc/sys/net/ipv6/conf/\(interface)/disable_ipv6", atomically: false, encoding: .utf8)
    }

    @discardableResult
    static func ip(_ arguments: [String]) throws -> String { try runProgram(["ip"] + arguments) }
}

/// A failure of the test harness itself (a command, the network set-up, the guest service).
public struct TestSupportError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
