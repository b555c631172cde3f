import Foundation

extension FleetView {
    /// `understudy fleet status --json`: `now`, the count of VMs per problem, and the rows.
    public func statusJSON() -> Data {
        struct Status: Encodable {
            var now: Double
            var counts: [String: Int]
            var vms: [Row]
        }
        let perProblem = counts
        return Self.encode(Status(now: now, counts: Dictionary(uniqueKeysWithValues: Problem.allCases.map { ($0.rawValue, perProblem[$0] ?? 0) }),
                                  vms: vms))
    }

    /// `understudy fleet hosts --json`: `now` and the hosts.
    public func hostsJSON() -> Data {
        struct Hosts: Encodable {
            var now: Double
            var hosts: [HostCapacity]
        }
        return Self.encode(Hosts(now: now, hosts: hosts))
    }

    private static func encode(_ value: some Encodable) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            return try encoder.encode(value)
        } catch {
            preconditionFailure("the fleet view holds strings, numbers and booleans only: \(error)")
        }
    }
}
