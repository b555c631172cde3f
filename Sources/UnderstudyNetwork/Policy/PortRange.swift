/// TCP or UDP ports a gate rule matches: "80" or "8000-8100" (both ends included).
public struct PortRange: Sendable, Equatable, CustomStringConvertible {
    public let lowest: UInt16
    public let highest: UInt16

    public init(_ lowest: UInt16, _ highest: UInt16) {
        precondition(lowest <= highest, "a port range runs upwards")
        self.lowest = lowest
        self.highest = highest
    }

    /// Nil for anything but a port or an ascending range of ports in 0...65535.
    public init?(parsing text: String) {
        let parts = text.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        func port(_ part: Substring) -> UInt16? {
            guard (1...5).contains(part.count), part.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
            return UInt16(part)
        }
        guard let low = port(parts[0]) else { return nil }
        let high = parts.count == 2 ? port(parts[1]) : low
        guard let high, low <= high else { return nil }
        self.init(low, high)
    }

    public func contains(_ port: UInt16) -> Bool { port >= lowest && port <= highest }

    public var description: String { lowest == highest ? "\(lowest)" : "\(lowest)-\(highest)" }
}
