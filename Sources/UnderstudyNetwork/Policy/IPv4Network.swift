/// An IPv4 prefix ("10.0.0.0/8"; a bare address is a /32), as a gate rule's source or destination.
public struct IPv4Network: Sendable, Equatable, CustomStringConvertible {
    /// The network address, host bits cleared, in host byte order.
    public let address: UInt32
    /// 0...32.
    public let prefixLength: Int
    private let mask: UInt32

    public init(address: UInt32, prefixLength: Int) {
        precondition((0...32).contains(prefixLength), "an IPv4 prefix length is 0...32")
        self.prefixLength = prefixLength
        // A shift by 32 is undefined in C and traps in Swift: /0 is written out.
        mask = prefixLength == 0 ? 0 : UInt32.max << (32 - prefixLength)
        self.address = address & mask
    }

    /// "A.B.C.D" or "A.B.C.D/N"; nil for anything else (including host bits set below the prefix,
    /// which usually means a typo in the address or the length).
    public init?(parsing text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = Self.address(parts[0]) else { return nil }
        var length = 32
        if parts.count == 2 {
            guard parts[1].count <= 2, parts[1].allSatisfy(\.isASCII), let n = Int(parts[1]), (0...32).contains(n) else { return nil }
            length = n
        }
        self.init(address: address, prefixLength: length)
        guard self.address == address else { return nil }
    }

    public func contains(_ address: UInt32) -> Bool { address & mask == self.address }

    public var description: String { "\(Self.format(address))/\(prefixLength)" }

    /// Dotted quad, host byte order.
    public static func format(_ address: UInt32) -> String {
        "\(address >> 24).\(address >> 16 & 0xFF).\(address >> 8 & 0xFF).\(address & 0xFF)"
    }

    private static func address(_ text: some StringProtocol) -> UInt32? {
        let octets = text.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4 else { return nil }
        var value: UInt32 = 0
        for octet in octets {
            guard (1...3).contains(octet.count), octet.allSatisfy({ $0.isASCII && $0.isNumber }), let n = UInt32(octet), n <= 255 else { return nil }
            value = value << 8 | n
        }
        return value
    }
}
