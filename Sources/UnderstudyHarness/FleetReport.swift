import Foundation
import UnderstudyAgent

/// What `FleetScenario` (and `understudy demo --fleet`) found: the figures issue 21 asks the
/// fleet demo to print, and whether they are what they must be.
public struct FleetReport: Codable, Sendable, Equatable {
    /// The VMs of the fleet.
    public var vms: [String] = []
    /// Each host (a network namespace) and its address on the fleet's management LAN.
    public var hosts: [String: String] = [:]
    /// Per event that costs a VM its backup, from the kill until its primary protected again.
    public var reprotectedMs: [String: Int] = [:]
    /// Values a counter client had received that its guest handed out again or went back behind.
    public var lostAcknowledgedOutput = 0
    /// Registry samples (every ~200 ms) in which two nodes reported the same VM as primary.
    public var twoActiveCopies = 0
    /// Registry samples taken.
    public var registrySamples = 0
    /// VMs whose backup passed at least one scheduled drill.
    public var drillsPassed = 0
    /// Each event, in order, and what was checked after it.
    public var events: [String] = []
    public var ok = false
    public var message = ""

    public init() {}

    /// How many of `values` (a counter client's replies, in order) a later reply did not exceed:
    /// output the client had that the guest no longer had when it answered next.
    public static func lostAcknowledgedOutput(_ values: [UInt64]) -> Int {
        var lost = 0
        var laterMinimum = UInt64.max
        for value in values.reversed() {
            if value >= laterMinimum { lost += 1 }
            laterMinimum = min(laterMinimum, value)
        }
        return lost
    }

    /// The VMs that two nodes report as their running primary in one registry read, counting
    /// only entries published within `freshWithin` seconds of `now`: a killed node's last entry
    /// stays in the registry until its lease runs out (up to `fleet.lease_ttl_s`), which can be
    /// after its backup took over, but a node that still runs republishes every `publish_ms`.
    public static func vmsWithTwoPrimaries(_ records: [FleetRecord], now: Double, freshWithin: Double) -> [String] {
        Dictionary(grouping: records.filter { $0.role == .primary && now - $0.publishedAt <= freshWithin }, by: \.vm)
            .filter { Set($0.value.map(\.node)).count > 1 }.keys.sorted()
    }

    /// The VMs whose backup reports a passed scheduled drill.
    public static func vmsWithPassedDrill(_ records: [FleetRecord]) -> Set<String> {
        Set(records.filter { $0.role == .backup && $0.lastDrillPassed == true }.map(\.vm))
    }

    /// A few lines for a person.
    public var humanReadable: String {
        let times = reprotectedMs.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value) ms" }.joined(separator: ", ")
        return """

            summary
              vms               \(vms.joined(separator: ", "))
              events            \(events.joined(separator: "\n                    "))
              re-protected      \(times.isEmpty ? "-" : times)
              lost output       \(lostAcknowledgedOutput) values the clients had received
              two active copies \(twoActiveCopies) of \(registrySamples) registry samples
              drills passed     \(drillsPassed) of \(vms.count) VMs
            \(ok ? "PASSED" : "FAILED"): \(message)
            """
    }
}
