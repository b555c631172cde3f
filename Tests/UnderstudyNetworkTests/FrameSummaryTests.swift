import Testing
import UnderstudyNetwork

/// Frames shaped like the guest's, for the classifier and the policy: an IPv4 datagram of
/// protocol `ipProtocol` whose first 4 payload bytes are the ports (checksums do not matter here).
func ipFrame(protocol ipProtocol: UInt8 = 6, from source: [UInt8] = [10, 99, 0, 2], to destination: [UInt8] = [10, 99, 0, 1],
             sourcePort: UInt16 = 40000, destinationPort: UInt16 = 80) -> [UInt8] {
    var frame = udpFrame(to: [2, 0, 0, 0, 0, 1], from: NetworkLab.guestMAC, sourceIP: source, destinationIP: destination,
                         sourcePort: sourcePort, destinationPort: destinationPort, payload: Array("payload".utf8))
    frame[23] = ipProtocol
    return frame
}

/// An Ethernet/IPv4 ARP request from `sender` for `target`.
func arpFrame(sender: [UInt8], target: [UInt8]) -> [UInt8] {
    [UInt8](repeating: 0xFF, count: 6) + NetworkLab.guestMAC + [0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]
        + NetworkLab.guestMAC + sender + [UInt8](repeating: 0, count: 6) + target
}

func summary(_ frame: [UInt8]) -> FrameSummary { frame.withUnsafeBytes { FrameSummary(parsing: $0) } }

@Suite struct FrameSummaryTests {
    @Test func readsTCPAndUDPAddressesAndPorts() {
        let tcp = summary(ipFrame(protocol: 6, sourcePort: 40000, destinationPort: 22))
        #expect(tcp.kind == .ipv4)
        #expect(tcp.ipProtocol == FrameSummary.tcp)
        #expect(tcp.source == 0x0A63_0002)
        #expect(tcp.destination == 0x0A63_0001)
        #expect(tcp.hasPorts)
        #expect(tcp.sourcePort == 40000)
        #expect(tcp.destinationPort == 22)
        #expect(tcp.description == "tcp 10.99.0.2:40000 > 10.99.0.1:22")
        let udp = summary(ipFrame(protocol: 17, destinationPort: 53))
        #expect(udp.ipProtocol == FrameSummary.udp)
        #expect(udp.destinationPort == 53)
    }

    @Test func icmpHasNoPorts() {
        let icmp = summary(ipFrame(protocol: 1))
        #expect(icmp.kind == .ipv4)
        #expect(icmp.ipProtocol == FrameSummary.icmp)
        #expect(!icmp.hasPorts)
    }

    @Test func oneVLANTagIsSkipped() {
        var frame = ipFrame(destinationPort: 443)
        frame.insert(contentsOf: [0x81, 0x00, 0x00, 0x05], at: 12)
        let tagged = summary(frame)
        #expect(tagged.kind == .ipv4)
        #expect(tagged.destinationPort == 443)
    }

    @Test func arpAddressesAreSourceAndDestination() {
        let arp = summary(arpFrame(sender: [10, 99, 0, 2], target: [10, 99, 0, 1]))
        #expect(arp.kind == .arp)
        #expect(arp.source == 0x0A63_0002)
        #expect(arp.destination == 0x0A63_0001)
        #expect(!arp.hasPorts)
    }

    @Test func aLaterFragmentHasNoPorts() {
        var frame = ipFrame(destinationPort: 22)
        frame[20] = 0x00
        frame[21] = 0x10
        let fragment = summary(frame)
        #expect(fragment.kind == .ipv4)
        #expect(!fragment.hasPorts, "bytes 0-3 of a later fragment are payload, not ports")
    }

    @Test func ipOptionsMoveThePorts() {
        var frame = ipFrame(destinationPort: 8080)
        frame[14] = 0x46
        frame.insert(contentsOf: [1, 1, 1, 0], at: 34)
        #expect(summary(frame).destinationPort == 8080)
    }

    @Test func ipv6AndOtherEtherTypesAreOther() {
        var frame = ipFrame()
        frame[12] = 0x86
        frame[13] = 0xDD
        #expect(summary(frame).kind == .other)
        #expect(summary(frame).description == "non-IPv4 frame")
    }

    /// Every prefix of valid frames, and frames with lying header lengths: never a trap, never a
    /// field read from beyond the frame.
    @Test func truncatedAndMalformedFramesAreSafe() {
        var tagged = ipFrame()
        tagged.insert(contentsOf: [0x81, 0x00, 0x00, 0x05], at: 12)
        for frame in [ipFrame(protocol: 6), ipFrame(protocol: 17), arpFrame(sender: [1, 2, 3, 4], target: [5, 6, 7, 8]), tagged] {
            for length in 0...frame.count {
                _ = summary(Array(frame[0..<length]))
            }
        }
        #expect(summary(Array(ipFrame()[0..<35])).kind == .ipv4)
        #expect(!summary(Array(ipFrame()[0..<35])).hasPorts, "the ports are cut off")
        var lying = ipFrame()
        lying[14] = 0x4F
        #expect(summary(lying).kind == .other, "a 60-byte IP header longer than the frame")
        lying[14] = 0x44
        #expect(summary(lying).kind == .other, "an IP header shorter than 20 bytes")
        #expect(summary([]).kind == .other)
    }
}
