import Foundation
import UnderstudySystem
import UnderstudyTransport
import UnderstudyWitness

/// The fleet registry in etcd: one key per VM and publishing host, one per host, each a JSON
/// entry attached to its publisher's lease, so that a dead node's entries vanish with it.
///
/// ```
/// /understudy/fleet/vms/<vm>/<host>   FleetRecord
/// /understudy/fleet/hosts/<host>      HostCapacity
/// ```
/// and those of spare hosts (`FleetRegistry+Spares`).
/// Every node on a host writes the same host entry (the counts come from the registry), the
/// last one on its own lease: when that node stops, the next publication of another one there
/// writes it again.
public struct FleetRegistry: Sendable {
    public static let prefix = "/understudy/fleet/"
    public static let vmsPrefix = prefix + "vms/"
    public static let hostsPrefix = prefix + "hosts/"

    public static func key(vm: String, host: String) -> String { "\(vmsPrefix)\(vm)/\(host)" }
    public static func key(host: String) -> String { "\(hostsPrefix)\(host)" }

    public let client: EtcdClient

    public init(client: EtcdClient) {
        self.client = client
    }

    /// A registry reached with `tls` (a node's or an operator's certificate of the fleet's CA).
    public init(endpoints: [Endpoint], tls: TLSConfiguration?, timeout: Duration = .seconds(2)) {
        self.init(client: EtcdClient(endpoints: endpoints, timeout: timeout, tls: tls))
    }

    /// Every VM entry and host entry now. Entries that do not decode (another version's, or not
    /// the registry's) are skipped and named in `unreadable`.
    public func read() throws(WitnessError) -> (records: [FleetRecord], hosts: [HostCapacity], unreadable: [String]) {
        let decoder = JSONDecoder()
        var unreadable: [String] = []
        var records: [FleetRecord] = []
        for kv in try client.range(prefix: Self.vmsPrefix) {
            if let record = try? decoder.decode(FleetRecord.self, from: Data(kv.value.utf8)) { records.append(record) } else { unreadable.append(kv.key) }
        }
        var hosts: [HostCapacity] = []
        for kv in try client.range(prefix: Self.hostsPrefix) {
            if let host = try? decoder.decode(HostCapacity.self, from: Data(kv.value.utf8)) { hosts.append(host) } else { unreadable.append(kv.key) }
        }
        return (records, hosts, unreadable)
    }

    /// The VM entries only (what a host's capacity is counted from).
    public func records() throws(WitnessError) -> [FleetRecord] {
        let decoder = JSONDecoder()
        return try client.range(prefix: Self.vmsPrefix).compactMap { try? decoder.decode(FleetRecord.self, from: Data($0.value.utf8)) }
    }

    /// Writes `records`, `host` and `descriptions` (a primary's VM, for spare hosts) in one
    /// transaction, attached to `lease`.
    public func publish(_ records: [FleetRecord], host: HostCapacity, descriptions: [VMDescriptionRecord] = [], lease: Int64) throws(WitnessError) {
        try client.put(records.map { (Self.key(vm: $0.vm, host: $0.host), Self.json($0)) } + [(Self.key(host: host.host), Self.json(host))]
            + descriptions.map { (Self.key(description: $0.vm), Self.json($0)) }, lease: lease)
    }
}
