import Foundation
#if canImport(Glibc)
import Glibc
#endif
import UnderstudyTransport

/// The `[drill]` table: how `understudy drill` rehearses a failover on the backup.
///
/// ```toml
/// [drill]
/// probe = "tcp:10.77.0.2:7000"          # or "exec:COMMAND", "serial:MARKER"; --probe overrides
/// timeout_s = 60                        # from starting the clone to a successful probe; --timeout overrides
/// sandbox_address = "10.77.0.1/24"      # the drill namespace's side of the clone's NIC (tcp and exec probes need it)
/// every = "24h"                         # the backup agent drills on this schedule (s, m, h, d); absent: never
/// slot_dir = "/run/understudy/drill-slots"  # the host's drill slots, shared by every agent on it
///
/// [fleet]
/// drills_at_once = 1                    # scheduled drills running at once on this host, across its agents
/// ```
public struct DrillConfiguration: Sendable, Equatable {
    public var probe: DrillProbe?
    public var timeout: Duration
    /// ADDRESS/PREFIX given to the clone's NIC's peer inside the drill's namespace.
    public var sandboxAddress: String?
    /// How often the backup agent drills; nil: only `understudy drill` does.
    public var every: Duration?
    /// How many scheduled drills may run at once on this host (`fleet.drills_at_once`).
    public var drillsAtOnce: Int
    /// The directory of the host's drill slot files (`HostSlots`).
    public var slotDirectory: String

    /// The shortest `every`: a drill copies the replica and boots a clone.
    static let shortestEvery: Duration = .seconds(10)
    static let knownKeys: Set<String> = ["drill.probe", "drill.timeout_s", "drill.sandbox_address", "drill.every", "drill.slot_dir",
                                         "fleet.drills_at_once"]

    public init(probe: DrillProbe? = nil, timeout: Duration = .seconds(60), sandboxAddress: String? = nil, every: Duration? = nil,
                drillsAtOnce: Int = 1, slotDirectory: String = "/run/understudy/drill-slots") {
        self.probe = probe
        self.timeout = timeout
        self.sandboxAddress = sandboxAddress
        self.every = every
        self.drillsAtOnce = drillsAtOnce
        self.slotDirectory = slotDirectory
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
        every = try d.duration("drill.every", in: Self.shortestEvery...(.seconds(365 * 86_400)))
        if every != nil, probe == nil {
            throw ConfigurationError(source: d.source, line: d.line(of: "drill.every"), key: "drill.probe",
                                     message: "missing: drill.every schedules drills, drill.probe says how they decide the clone recovered")
        }
        drillsAtOnce = Int(try d.integer("fleet.drills_at_once", in: 1...64) ?? 1)
        slotDirectory = try d.string("drill.slot_dir") ?? "/run/understudy/drill-slots"
        guard slotDirectory.hasPrefix("/") else {
            throw ConfigurationError(source: d.source, line: d.line(of: "drill.slot_dir"), key: "drill.slot_dir",
                                     message: "\"\(slotDirectory)\" is not an absolute path: every agent on the host must find the same directory")
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
