import UnderstudyNetwork

extension GatePolicy {
    /// The keys of each `[[network.rules]]` element, and the default action.
    static let knownKeys: Set<String> = [
        "network.default_action",
        "network.rules.name", "network.rules.action", "network.rules.direction", "network.rules.protocol",
        "network.rules.source", "network.rules.destination", "network.rules.source_ports", "network.rules.destination_ports",
        "network.rules.rate", "network.rules.burst",
    ]

    /// The gate policy of `[network]`: `[[network.rules]]` in order, first match wins, and
    /// `network.default_action` for frames no rule matches (allow when absent). A bad rule is an
    /// error naming the rule by its index from 0, its key and its line.
    ///
    /// ```toml
    /// [network]
    /// default_action = "allow"          # allow | deny: frames no rule matches
    ///
    /// [[network.rules]]
    /// name = "no ssh from outside"      # optional: the rule's label in status and metrics
    /// action = "deny"                   # allow | deny (required)
    /// direction = "to_guest"            # from_guest | to_guest | both (default)
    /// protocol = "tcp"                  # tcp | udp | icmp | arp | any (default)
    /// source = "0.0.0.0/0"              # IPv4 address or CIDR (ARP: the sender's address)
    /// destination = "10.0.0.5"          # IPv4 address or CIDR (ARP: the target's address)
    /// destination_ports = "22"          # "80" or "8000-8100"; tcp and udp only (source_ports too)
    ///
    /// [[network.rules]]
    /// action = "allow"
    /// protocol = "icmp"
    /// rate = 10                         # allow rules only: frames per second, the rest dropped...
    /// burst = 20                        # ...after a burst of this many (default: rate)
    /// ```
    init(document d: TOMLDocument) throws(ConfigurationError) {
        var rules: [GateRule] = []
        for index in 0..<d.count(ofTables: "network.rules") {
            let prefix = "network.rules[\(index)]."
            func fail(_ field: String, _ message: String) -> ConfigurationError {
                let key = prefix + field
                // A missing key has no line: the rule's first key's points at the rule.
                let line = d.line(of: key) ?? d.keys.first { $0.hasPrefix(prefix) }.flatMap { d.line(of: $0) }
                return ConfigurationError(source: d.source, line: line, key: key,
                                          message: "rule \(index): \(message)")
            }
            guard let action = try d.oneOf(prefix + "action", GateRule.Action.self) else {
                throw fail("action", "missing required key (allow or deny)")
            }
            func network(_ field: String) throws(ConfigurationError) -> IPv4Network? {
                guard let text = try d.string(prefix + field) else { return nil }
                guard let network = IPv4Network(parsing: text) else {
                    throw fail(field, "\(text.debugDescription) is not an IPv4 address or network like \"10.0.0.0/8\" (host bits below the prefix must be 0)")
                }
                return network
            }
            func ports(_ field: String) throws(ConfigurationError) -> PortRange? {
                let text: String
                switch d.value(prefix + field) {
                case nil: return nil
                case .integer(let number): text = String(number)
                case .string(let string): text = string
                default: throw fail(field, "expected a port (\"80\") or a range (\"8000-8100\")")
                }
                guard let range = PortRange(parsing: text) else {
                    throw fail(field, "\(text.debugDescription) is not a port (\"80\") or an ascending range (\"8000-8100\") in 0...65535")
                }
                return range
            }
            var rateLimit: GateRule.RateLimit?
            if let rate = try d.integer(prefix + "rate", in: 1...100_000_000) {
                let burst = try d.integer(prefix + "burst", in: 1...100_000_000) ?? rate
                rateLimit = GateRule.RateLimit(packetsPerSecond: Int(rate), burst: Int(burst))
            } else if d.value(prefix + "burst") != nil {
                throw fail("burst", "a burst needs a rate (frames per second)")
            }
            let rule = GateRule(
                name: try d.string(prefix + "name"), action: action,
                direction: try d.oneOf(prefix + "direction", GateRule.Direction.self) ?? .both,
                traffic: try d.oneOf(prefix + "protocol", GateRule.Traffic.self) ?? .any,
                source: try network("source"), destination: try network("destination"),
                sourcePorts: try ports("source_ports"), destinationPorts: try ports("destination_ports"), rateLimit: rateLimit)
            if let problem = rule.problem { throw fail(problem.field, problem.message) }
            rules.append(rule)
        }
        self.init(rules: rules, defaultAction: try d.oneOf("network.default_action", GateRule.Action.self) ?? .allow)
    }
}
