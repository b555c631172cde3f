import Foundation
#if canImport(Glibc)
import Glibc
#endif
import UnderstudyTransport

/// The `[drill]` table: how `understudy drill` rehearses a failover on the backup.
///
/// ```toml
/// [drill]
/// probe = "tcp:10.77.0.2:7000"          # or "serial:MARKER"; --probe overrides
/// timeout_s = 60                        # from starting the clone to a successful probe; --timeout overrides
/// sandbox_address = "10.77.0.1/24"      # the drill namespace's side of the clone's NIC (a tcp probe needs it)
/// ```
public struct DrillConfiguration: Sendable, Equatable {
    public var probe: DrillProbe?
    public var timeout: Duration
    /// ADDRESS/PREFIX given to the clone's NIC's peer inside the drill's namespace.
    public var sandboxAddress: String?

    static let knownKeys: Set<String> = ["drill.probe", "drill.timeout_s", "drill.sandbox_address"]

    public init(probe: DrillProbe? = nil, timeout: Duration = .seconds(60), sandboxAddress: String? = nil) {
        self.probe = probe
        self.timeout = timeout
        self.sandboxAddress = sandboxAddress
    }

    init(document d: TOMLDocument) throws(ConfigurationError) {
        self.init()
        if let text = try d.string("drill.probe") {
            do {
                probe = try DrillProbe(parsing: text)
            } catch {
                throw ConfigurationError(source: d.source, line: d.line(of: "drill.probe"), key: "drill.probe", message: error.description)
            }
        }
        timeout = .seconds(try d.integer("drill.timeout_s", in: 1...3600) ?? 60)
        sandboxAddress = try d.string("drill.sandbox_address")
        if let address = sandboxAddress, !Self.isInterfaceAddress(address) {
            throw ConfigurationError(source: d.source, line: d.line(of: "drill.sandbox_address"), key: "drill.sandbox_address",
                                     message: "\"\(address)\" is not ADDRESS/PREFIX like \"10.77.0.1/24\"")
        }
    }

    /// An IPv4 or IPv6 address with a prefix length that fits it.
    static func isInterfaceAddress(_ text: String) -> Bool {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let prefix = Int(parts[1]) else { return false }
        var buffer = in6_addr()
        if inet_pton(AF_INET, String(parts[0]), &buffer) == 1 { return (0...32).contains(prefix) }
        return inet_pton(AF_INET6, String(parts[0]), &buffer) == 1 && (0...128).contains(prefix)
    }
}
