import ArgumentParser
import Foundation
import UnderstudyAgent
import UnderstudySystem
import UnderstudyTransport

/// How the fleet commands reach the registry: etcd's endpoints and a client certificate of the
/// fleet's CA, given directly or taken from a node's configuration file.
struct FleetOptions: ParsableArguments {
    @Option(name: .long, help: "etcd client endpoints, comma-separated HOST:PORT (TLS). Default with --config: its fleet.endpoints.")
    var etcd: String?

    @Option(name: .long, help: "Directory with ca.pem and the --node certificate (from `understudy certs init`).")
    var certs: String?

    @Option(name: .long, help: "The certificate to present to etcd: NODE.pem and NODE.key in --certs.")
    var node: String?

    @Option(name: .long, help: "The name in etcd's certificate.")
    var serverName = "witness"

    @Option(name: .long, help: "A node's configuration file: its [fleet] (or [witness]) endpoints and its own certificate.")
    var config: String?

    @Flag(name: .long, help: "Print JSON.")
    var json = false

    @Flag(name: .long, help: "Keep showing the fleet, refreshed every --interval seconds, until interrupted.")
    var watch = false

    @Option(name: .long, help: "Seconds between refreshes with --watch.")
    var interval: Double = 1

    func validate() throws {
        if config == nil {
            guard etcd != nil, certs != nil, node != nil else {
                throw ValidationError("give --etcd, --certs and --node (or --config with a node's configuration)")
            }
        } else if certs != nil || node != nil {
            throw ValidationError("--certs and --node come from --config's node; give one or the other")
        }
        guard interval >= 0.05 && interval <= 3600 else { throw ValidationError("--interval must be between 0.05 and 3600 seconds") }
        guard !(watch && json) else { throw ValidationError("--watch shows a table for people; poll --json for scripts") }
    }

    /// The registry these options name.
    func registry() throws -> FleetRegistry {
        var endpoints: [Endpoint] = []
        var tls: TLSConfiguration
        if let config {
            let configuration = try ConfigOptions(config: config).load()
            endpoints = configuration.fleet?.endpoints ?? configuration.witnessEndpoints
            tls = configuration.fleet?.tls
                ?? TLSConfiguration(directory: configuration.certificates, node: configuration.nodeName, peer: configuration.witnessServerName)
        } else {
            tls = TLSConfiguration(directory: certs!, node: node!, peer: serverName)
        }
        if let etcd {
            endpoints = []
            for text in etcd.split(separator: ",") {
                do {
                    endpoints.append(try Endpoint(parsing: text.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "https://", with: "")))
                } catch {
                    throw ValidationError("--etcd: \(error)")
                }
            }
        }
        guard !endpoints.isEmpty else { throw ValidationError("no etcd endpoints: give --etcd (the configuration has neither fleet.endpoints nor witness.endpoints)") }
        return FleetRegistry(endpoints: endpoints, tls: tls)
    }

    /// Prints `render`'s output for the registry's fleet now, once or, with --watch, until interrupted.
    func show(thresholds: FleetView.Thresholds, _ render: (FleetView) -> String) throws {
        let registry = try registry()
        func once() throws {
            let (records, hosts, unreadable) = try registry.read()
            let view = FleetView(records: records, hosts: hosts, now: Date().timeIntervalSince1970, thresholds: thresholds)
            print(render(view))
            if !unreadable.isEmpty, !json {
                print("(skipped \(unreadable.count) entr\(unreadable.count == 1 ? "y" : "ies") this version cannot read: \(unreadable.joined(separator: ", ")))")
            }
        }
        guard watch else { return try once() }
        redraw(every: interval, once)
    }
}
