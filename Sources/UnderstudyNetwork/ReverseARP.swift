/// The frame a NIC that moved announces itself with (what QEMU's `announce-self` sends when the
/// guest cannot): a RARP request from its MAC address to the broadcast address. Switches learn
/// the address's new port from its source, so traffic for the VM comes here from then on.
public enum ReverseARP {
    /// The announcement of `mac`: 14 bytes of Ethernet header and 28 of RARP, padded to 60 bytes
    /// (the shortest Ethernet frame without its checksum).
    public static func announcement(of mac: [UInt8]) -> [UInt8] {
        precondition(mac.count == 6, "a MAC address has 6 bytes")
        let broadcast = [UInt8](repeating: 0xFF, count: 6)
        var frame = broadcast + mac + [0x80, 0x35]  // EtherType RARP
        frame += [0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x03]  // Ethernet, IPv4, lengths, "reverse request"
        frame += mac + [0, 0, 0, 0] + mac + [0, 0, 0, 0]  // sender and target: the MAC, no IPv4 address yet
        return frame + [UInt8](repeating: 0, count: 60 - frame.count)
    }

    /// `52:54:00:12:34:56` as its 6 bytes; nil when it is not a MAC address.
    public static func macAddress(_ text: String) -> [UInt8]? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return nil }
        let bytes = parts.compactMap { $0.count == 2 ? UInt8($0, radix: 16) : nil }
        return bytes.count == 6 ? bytes : nil
    }
}
