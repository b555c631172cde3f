import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Ports on 127.0.0.1 for the listeners of a test, a benchmark or the demo: a run of consecutive
/// ports below the kernel's ephemeral range (`ip_local_port_range`), where no outgoing connection
/// of another test can hold one, each free for TCP and UDP when chosen. (A random pick in
/// 20000–50000 once met a port the kernel had just given a client: "Address already in use".)
public enum LoopbackPorts {
    /// The first of `span` consecutive ports found free, drawn with `generator`.
    public static func free(span: Int = 16, using generator: inout some RandomNumberGenerator) -> UInt16 {
        let range = lowest...(ephemeralStart - span)
        for _ in 0..<1000 {
            let first = Int.random(in: range, using: &generator)
            if (first..<(first + span)).allSatisfy({ isFree(UInt16($0)) }) { return UInt16(first) }
        }
        preconditionFailure("no \(span) consecutive free loopback ports in \(range)")
    }

    /// The first of `span` consecutive ports found free.
    public static func free(span: Int = 16) -> UInt16 {
        var generator = SystemRandomNumberGenerator()
        return free(span: span, using: &generator)
    }

    /// Below the well-known and registered ports most services use.
    static let lowest = 10_000

    /// The first port the kernel hands out to outgoing connections.
    static var ephemeralStart: Int {
        let text = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
        return text.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) } ?? 32768
    }

    /// Whether a TCP and a UDP socket can both bind 127.0.0.1:`port` now (without SO_REUSEADDR:
    /// a port a closed connection still holds counts as taken).
    static func isFree(_ port: UInt16) -> Bool {
        [SOCK_STREAM, SOCK_DGRAM].allSatisfy { kind in
            let fd = socket(AF_INET, Int32(kind.rawValue), 0)
            guard fd >= 0 else { return false }
            defer { close(fd) }
            var address = address(port: port)
            // Safe: `address` is a sockaddr_in, passed with its own size, read only during the call.
            return withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            } == 0
        }
    }

    /// 127.0.0.1:`port` as a socket address.
    static func address(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return address
    }
}
