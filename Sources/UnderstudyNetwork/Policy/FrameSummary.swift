/// What the gate policy needs to know about an Ethernet frame, read from its headers in place:
/// no allocation, and every offset checked against the frame's length, so that a truncated or
/// malformed frame (the guest writes whatever it likes) yields `.other` or an IPv4 summary
/// without ports rather than a trap.
///
/// Understands Ethernet II with at most one 802.1Q/802.1ad tag, IPv4 (any header length; ports
/// only in a datagram's first fragment) carrying TCP, UDP or ICMP, and Ethernet/IPv4 ARP, whose
/// sender and target protocol addresses stand for source and destination. Everything else
/// (IPv6 included) is `.other`: only rules for any protocol and no address match it.
public struct FrameSummary: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        case ipv4
        case arp
        case other
    }

    public static let tcp: UInt8 = 6
    public static let udp: UInt8 = 17
    public static let icmp: UInt8 = 1

    public var kind: Kind = .other
    /// IPv4's protocol field; 0 unless `kind` is `.ipv4`.
    public var ipProtocol: UInt8 = 0
    /// Host byte order; 0 unless `kind` is `.ipv4` or `.arp`.
    public var source: UInt32 = 0
    public var destination: UInt32 = 0
    /// Meaningful only when `hasPorts` (TCP or UDP, first fragment, the ports inside the frame).
    public var sourcePort: UInt16 = 0
    public var destinationPort: UInt16 = 0
    public var hasPorts = false

    public init() {}

    /// Reads `frame` (an Ethernet frame without preamble or FCS).
    public init(parsing frame: UnsafeRawBufferPointer) {
        let count = frame.count
        func u16(_ at: Int) -> UInt16 { UInt16(frame[at]) << 8 | UInt16(frame[at + 1]) }
        func u32(_ at: Int) -> UInt32 { UInt32(u16(at)) << 16 | UInt32(u16(at + 2)) }
        guard count >= 14 else { return }
        var offset = 14
        var etherType = u16(12)
        if etherType == 0x8100 || etherType == 0x88A8 {
            guard count >= 18 else { return }
            etherType = u16(16)
            offset = 18
        }
        switch etherType {
        case 0x0800:
            guard count >= offset + 20, frame[offset] >> 4 == 4 else { return }
            let headerLength = Int(frame[offset] & 0x0F) * 4
            guard headerLength >= 20, count >= offset + headerLength else { return }
            kind = .ipv4
            ipProtocol = frame[offset + 9]
            source = u32(offset + 12)
            destination = u32(offset + 16)
            let fragmentOffset = u16(offset + 6) & 0x1FFF
            let transport = offset + headerLength
            if fragmentOffset == 0, ipProtocol == Self.tcp || ipProtocol == Self.udp, count >= transport + 4 {
                sourcePort = u16(transport)
                destinationPort = u16(transport + 2)
                hasPorts = true
            }
        case 0x0806:
            // Hardware Ethernet (1), protocol IPv4, 6-byte and 4-byte addresses: the only ARP an
            // IPv4 guest speaks; any other shape stays `.other`.
            guard count >= offset + 28, u16(offset) == 1, u16(offset + 2) == 0x0800, frame[offset + 4] == 6, frame[offset + 5] == 4 else { return }
            kind = .arp
            source = u32(offset + 14)
            destination = u32(offset + 24)
        default:
            return
        }
    }

    /// For log lines about denied frames: "tcp 10.0.0.2:40000 > 10.0.0.1:22".
    public var description: String {
        switch kind {
        case .other: return "non-IPv4 frame"
        case .arp: return "arp \(IPv4Network.format(source)) > \(IPv4Network.format(destination))"
        case .ipv4:
            let name = switch ipProtocol {
            case Self.tcp: "tcp"
            case Self.udp: "udp"
            case Self.icmp: "icmp"
            default: "ip protocol \(ipProtocol)"
            }
            guard hasPorts else { return "\(name) \(IPv4Network.format(source)) > \(IPv4Network.format(destination))" }
            return "\(name) \(IPv4Network.format(source)):\(sourcePort) > \(IPv4Network.format(destination)):\(destinationPort)"
        }
    }
}
