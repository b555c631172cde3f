import Foundation
import UnderstudyQEMU
import UnderstudySystem

/// One VM a spare host protects: its slot (its port and TAP names), its files, and the backup
/// node's configuration file, written from the VM's description and the spare's configuration
/// so that nothing needs a hand edit:
/// - the node: the spare's name and certificates (the primary expects the claim's node name, and
///   trusts it through the fleet's CA);
/// - the peer: the primary's node name, and its `backup.listen` (where an activation here
///   protects the VM back to) when it published one;
/// - the VM: the description's model; its replicated images are sparse files of the primary's
///   sizes under the VM's state directory (the backup's replica disks), its memory replica under
///   `spare.replica_dir`; a kernel and initrd from `spare.boot_dir`;
/// - replication, heartbeat, failover and witness as the primary's; `[fleet]` as the spare's, so
///   the backup node publishes its entry (what keeps the claim live) and its state;
/// - the second heartbeat path when both ends have one (`datagramListen`): `udp_listen` on
///   `spare.udp_host` at the slot's port, `udp_peer` the primary's published `udp_listen`.
public struct SpareAssignment: Sendable, Equatable {
    public let vm: String
    public let slot: Int
    public let listen: Endpoint
    /// Where the backup node would receive heartbeat datagrams (`spare.udp_host`, the slot's port); nil: no `spare.udp_host`.
    public let udp: Endpoint?
    /// The VM's directory under `spare.state_dir`: configuration, log, node state, run directory, disks.
    public let directory: String
    public let replicaDirectory: String

    public init(vm: String, slot: Int, spare: SpareConfiguration) {
        precondition((0..<spare.slots).contains(slot))
        self.vm = vm
        self.slot = slot
        listen = Endpoint(host: spare.listenHost, port: spare.portBase + UInt16(slot))
        udp = spare.udpHost.map { Endpoint(host: $0, port: spare.portBase + UInt16(slot)) }
        directory = "\(spare.stateDirectory)/\(vm)"
        replicaDirectory = "\(spare.replicaDirectory)/\(vm)"
    }

    public var configurationFile: String { "\(directory)/backup.toml" }
    public var logFile: String { "\(directory)/backup.log" }

    /// The replica's image files, in the guest's order (with UEFI the last is the variable store).
    public func imageFiles(_ description: VMDescriptionRecord) -> [String] {
        description.diskSizes.indices.map { index in
            description.firmware == "uefi" && index == description.diskSizes.count - 1 ? "\(directory)/uefi-vars.fd" : "\(directory)/disk\(index).raw"
        }
    }

    /// Where the backup node receives heartbeat datagrams for the VM described (what the claim
    /// tells its primary); nil when either end has no second path: the pair then has the
    /// replication link only.
    public func datagramListen(_ description: VMDescriptionRecord) -> Endpoint? {
        description.primaryUDP == nil ? nil : udp
    }

    /// Why this spare cannot protect the VM described; nil: it can.
    public static func problem(with description: VMDescriptionRecord, spare: SpareConfiguration) -> String? {
        if description.kernelName != nil || description.initrdName != nil {
            guard let boot = spare.bootDirectory else { return "the VM boots from a kernel and spare.boot_dir is not set" }
            for name in [description.kernelName, description.initrdName].compactMap({ $0 })
                where !FileManager.default.fileExists(atPath: "\(boot)/\(name)") {
                return "its kernel or initrd \(name) is not in spare.boot_dir (\(boot))"
            }
        }
        if description.macs.count > GuestDevices.maximumNICs { return "\(description.macs.count) NICs" }
        if !VMDescription.isValidID(description.vm) { return "\(description.vm.debugDescription) is not a VM id" }
        return nil
    }

    /// Creates the VM's directories and its empty replica images (sparse, of the primary's sizes),
    /// and writes the backup node's configuration file. Images already there (a restarted spare's)
    /// are kept when their size matches.
    public func prepare(_ description: VMDescriptionRecord, spare: SpareConfiguration) throws {
        for path in [directory, replicaDirectory] {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        for (path, size) in zip(imageFiles(description), description.diskSizes) {
            let existing = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? UInt64
            guard existing != size else { continue }
            guard FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]) else {
                throw HostCommand.Failure("cannot create the replica image \(path)")
            }
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            defer { try? handle.close() }
            try handle.truncate(atOffset: size)
        }
        try DurableFile.replace(configurationFile, with: configurationText(description, spare: spare))
    }

    /// The backup node's configuration file.
    public func configurationText(_ d: VMDescriptionRecord, spare: SpareConfiguration) -> String {
        func value(_ text: String) -> String { TOMLValue.string(text).tomlText }
        func list(_ texts: [String]) -> String { TOMLValue.array(texts.map { .string($0) }).tomlText }
        let images = imageFiles(d)
        var lines = [
            "# Written by `understudy spare` for VM \(d.vm), claimed from \(d.primaryNode)'s lost backup; rewritten on each claim.",
            "[node]", "name = \(value(spare.nodeName))", "certificates = \(value(spare.certificates))", "state_dir = \(value("\(directory)/node"))",
            "", "[peer]", "name = \(value(d.primaryNode))",
        ]
        if let address = d.primaryAddress { lines.append("address = \(value(address))") }
        lines += ["", "[vm]", "id = \(value(d.vm))", "memory_mib = \(d.memoryBytes >> 20)", "vcpus = \(d.vcpus)", "machine = \(value(d.machine))",
                  "cmdline = \(value(d.commandLine))", "rng = \(d.randomNumberGenerator)", "virtio = \(value(d.virtio))",
                  "run_dir = \(value("\(directory)/run"))"]
        if let boot = spare.bootDirectory {
            if let kernel = d.kernelName { lines.append("kernel = \(value("\(boot)/\(kernel)"))") }
            if let initrd = d.initrdName { lines.append("initrd = \(value("\(boot)/\(initrd)"))") }
        }
        let disks = d.firmware == "uefi" ? Array(images.dropLast()) : images
        if !disks.isEmpty { lines.append("disks = \(list(disks))") }
        if d.firmware == "uefi", let variables = images.last { lines += ["firmware = \"uefi\"", "uefi_vars = \(value(variables))"] }
        if !d.macs.isEmpty {
            lines.append("macs = \(list(d.macs))")
            lines += ["", "[network]", "taps = \(list(d.macs.indices.map { "\(spare.tapPrefix)\(slot)n\($0)" }))"]
        }
        lines += ["", "[replication]", "mode = \(value(d.replicationMode))", "interval_ms = \(d.intervalMilliseconds)",
                  "max_epochs_in_flight = \(d.maxEpochsInFlight)",
                  "", "[backup]", "listen = \(value(listen.description))", "replica_dir = \(value(replicaDirectory))",
                  "", "[heartbeat]", "interval_ms = \(d.heartbeatIntervalMilliseconds)", "missed = \(d.heartbeatMissed)",
                  "min_timeout_ms = \(d.heartbeatMinimumTimeoutMilliseconds)"]
        if let udp = datagramListen(d), let peer = d.primaryUDP {
            lines += ["udp_listen = \(value(udp.description))", "udp_peer = \(value(peer))"]
        }
        lines += ["", "[failover]", "automatic = \(d.failoverAutomatic)"]
        if d.failoverWithoutWitness { lines.append("without_witness = true") }
        if !d.witnessEndpoints.isEmpty {
            lines += ["", "[witness]", "endpoints = \(list(d.witnessEndpoints))", "lease_ttl_s = \(d.witnessLeaseTTLSeconds)",
                      "server_name = \(value(d.witnessServerName))"]
        }
        let fleet = spare.fleet
        lines += ["", "[fleet]", "endpoints = \(list(fleet.endpoints.map(\.description)))", "host = \(value(fleet.host))",
                  "lease_ttl_s = \(Int(fleet.leaseTTL.seconds))", "publish_ms = \(fleet.publishPeriod.wholeMilliseconds)",
                  "max_primaries = \(fleet.maxPrimaries ?? spare.slots)", "max_backups = \(spare.slots)",
                  "slot_memory_mib = \(fleet.slotMemoryBytes >> 20)"]
        if let server = fleet.tls?.expectedPeerName { lines.append("server_name = \(value(server))") }
        return lines.joined(separator: "\n") + "\n"
    }
}
