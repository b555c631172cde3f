import ArgumentParser
import Foundation
import UnderstudyAgent

struct FleetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet", abstract: "Show every protected VM and host of the fleet, from the registry in etcd.",
        discussion: """
            Nodes with a [fleet] table publish their VM's status and their host's capacity to etcd under \
            /understudy/fleet/, on a lease: a dead node's entries vanish by themselves.
            """,
        subcommands: [Status.self, Hosts.self])

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "status", abstract: "One table of all VMs, problems first: unprotected, lagging, drill overdue or failed, fenced.")

        @OptionGroup var fleet: FleetOptions

        @Option(name: .long, help: "A primary whose lag is over this many milliseconds is lagging (when it has no objective of its own).")
        var lagMs: Int = 5000

        @Option(name: .long, help: "A VM with no passed drill for this many hours is overdue; 0: do not check drills.")
        var drillOverdueHours: Int = 168

        func validate() throws {
            guard lagMs > 0 else { throw ValidationError("--lag-ms must be positive") }
            guard (0...1_000_000).contains(drillOverdueHours) else { throw ValidationError("--drill-overdue-hours must be 0 to 1000000") }
        }

        func run() throws {
            let thresholds = FleetView.Thresholds(lag: .milliseconds(lagMs),
                                                  drillOverdue: drillOverdueHours == 0 ? nil : .seconds(drillOverdueHours * 3600))
            let json = fleet.json
            try fleet.show(thresholds: thresholds) { view in json ? String(decoding: view.statusJSON(), as: UTF8.self) : view.statusTable }
        }
    }

    struct Hosts: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "hosts", abstract: "The fleet's hosts: what each runs, and how many more VMs it can take as primary and as backup.")

        @OptionGroup var fleet: FleetOptions

        func run() throws {
            let json = fleet.json
            try fleet.show(thresholds: FleetView.Thresholds()) { view in json ? String(decoding: view.hostsJSON(), as: UTF8.self) : view.hostsTable }
        }
    }
}
