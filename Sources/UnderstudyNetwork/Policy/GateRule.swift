/// One entry of the gate policy: which frames it matches and what happens to them. A field left
/// nil matches every frame; a frame must match every field that is set.
public struct GateRule: Sendable, Equatable, CustomStringConvertible {
    public enum Action: String, Sendable, CaseIterable {
        case allow
        case deny
    }

    public enum Direction: String, Sendable, CaseIterable {
        case fromGuest = "from_guest"
        case toGuest = "to_guest"
        case both

        func includes(_ direction: FrameDirection) -> Bool {
            switch (self, direction) {
            case (.both, _), (.fromGuest, .fromGuest), (.toGuest, .toGuest): true
            default: false
            }
        }
    }

    public enum Traffic: String, Sendable, CaseIterable {
        case tcp
        case udp
        case icmp
        case arp
        case any

        /// Whether frames of this protocol carry ports a rule can match.
        public var hasPorts: Bool { self == .tcp || self == .udp }

        func includes(_ frame: FrameSummary) -> Bool {
            switch self {
            case .any: true
            case .arp: frame.kind == .arp
            case .tcp: frame.kind == .ipv4 && frame.ipProtocol == FrameSummary.tcp
            case .udp: frame.kind == .ipv4 && frame.ipProtocol == FrameSummary.udp
            case .icmp: frame.kind == .ipv4 && frame.ipProtocol == FrameSummary.icmp
            }
        }
    }

    /// Frames per second a rule lets through on average, with bursts of up to `burst` frames
    /// after a quiet spell; the frames over it are dropped.
    public struct RateLimit: Sendable, Equatable, CustomStringConvertible {
        public var packetsPerSecond: Int
        public var burst: Int

        public init(packetsPerSecond: Int, burst: Int) {
            precondition(packetsPerSecond > 0 && burst > 0, "a rate limit is positive")
            self.packetsPerSecond = packetsPerSecond
            self.burst = burst
        }

        public var description: String { "\(packetsPerSecond)/s burst \(burst)" }
    }

    /// The operator's label in status and metrics; nil: the rule is known by its number.
    public var name: String?
    public var action: Action
    public var direction: Direction
    /// The protocol field (`protocol` in the configuration).
    public var traffic: Traffic
    public var source: IPv4Network?
    public var destination: IPv4Network?
    /// Only with TCP or UDP.
    public var sourcePorts: PortRange?
    public var destinationPorts: PortRange?
    /// Only on allow rules: frames over the rate are dropped.
    public var rateLimit: RateLimit?

    public init(name: String? = nil, action: Action, direction: Direction = .both, traffic: Traffic = .any,
                source: IPv4Network? = nil, destination: IPv4Network? = nil,
                sourcePorts: PortRange? = nil, destinationPorts: PortRange? = nil, rateLimit: RateLimit? = nil) {
        self.name = name
        self.action = action
        self.direction = direction
        self.traffic = traffic
        self.source = source
        self.destination = destination
        self.sourcePorts = sourcePorts
        self.destinationPorts = destinationPorts
        self.rateLimit = rateLimit
    }

    /// Why the rule cannot be used, if it cannot; `GatePolicy` refuses such rules.
    public var problem: (field: String, message: String)? {
        if !traffic.hasPorts, sourcePorts != nil || destinationPorts != nil {
            return (sourcePorts != nil ? "source_ports" : "destination_ports", "ports need protocol \"tcp\" or \"udp\", not \"\(traffic.rawValue)\"")
        }
        if rateLimit != nil, action == .deny {
            return ("rate", "a rate limit caps what an allow rule lets through; a deny rule drops everything it matches")
        }
        return nil
    }

    /// Whether the rule applies to `frame` crossing the gate `direction` (the rate limit aside).
    /// A rule with an address matches only IPv4 and ARP frames; with ports, only TCP and UDP
    /// frames whose ports are known (a later fragment's are not).
    public func matches(_ frame: FrameSummary, _ direction: FrameDirection) -> Bool {
        guard self.direction.includes(direction), traffic.includes(frame) else { return false }
        if let source {
            guard frame.kind != .other, source.contains(frame.source) else { return false }
        }
        if let destination {
            guard frame.kind != .other, destination.contains(frame.destination) else { return false }
        }
        if let sourcePorts {
            guard frame.hasPorts, sourcePorts.contains(frame.sourcePort) else { return false }
        }
        if let destinationPorts {
            guard frame.hasPorts, destinationPorts.contains(frame.destinationPort) else { return false }
        }
        return true
    }

    /// "deny tcp to_guest to 10.0.0.0/8 port 22", the rule as a line of status.
    public var description: String {
        var parts = [action.rawValue, traffic.rawValue, direction.rawValue]
        if let source { parts.append("from \(source)") }
        if let sourcePorts { parts.append("source port \(sourcePorts)") }
        if let destination { parts.append("to \(destination)") }
        if let destinationPorts { parts.append("port \(destinationPorts)") }
        if let rateLimit { parts.append("at most \(rateLimit)") }
        return parts.joined(separator: " ")
    }
}
