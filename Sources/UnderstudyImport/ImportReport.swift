/// What `understudy import` tells the operator, printed and written to DIR/import-report.txt
/// (with `--json`, printed as JSON): the verdict, what was taken over, what changes and why,
/// what blocks protection, what was written and what is left to do on the two hosts.
public struct ImportReport: Sendable, Codable, Equatable {
    public var source: String
    public var protectable: Bool
    public var plan: ImportPlan
    public var written: [String]
    public var nextSteps: [String]

    public init(source: String, plan: ImportPlan, written: [String], options: ImportOptions) {
        self.source = source
        self.protectable = plan.isProtectable
        self.plan = plan
        self.written = written
        self.nextSteps = plan.isProtectable ? Self.steps(plan, options) : []
    }

    public var text: String {
        var lines = ["understudy import \(plan.kind.rawValue) \(source): "
                     + (protectable ? "ready to protect" : "REFUSED: \(plan.blockers.count) thing\(plan.blockers.count == 1 ? "" : "s") block\(plan.blockers.count == 1 ? "s" : "") protection")]
        lines.append("VM \(plan.id.isEmpty ? "?" : plan.id) (\(plan.kind == .libvirt ? "libvirt domain" : "OVF virtual system") \"\(plan.sourceName)\"): "
                     + "\(plan.memoryMiB) MiB, \(plan.vcpus) vCPU\(plan.vcpus == 1 ? "" : "s"), \(plan.machine), \(plan.firmware == .uefi ? "UEFI" : "BIOS"), "
                     + "\(plan.disks.count) disk\(plan.disks.count == 1 ? "" : "s"), \(plan.nics.count) NIC\(plan.nics.count == 1 ? "" : "s")"
                     + (plan.rng ? ", virtio-rng" : ""))
        if !plan.blockers.isEmpty {
            lines.append("blocks protection:")
            lines += plan.blockers.map { "  - \($0.subject): \($0.reason)" }
        }
        if !plan.takenOver.isEmpty {
            lines.append("taken over:")
            lines += plan.takenOver.map { "  - \($0)" }
        }
        if !plan.changes.isEmpty {
            lines.append("changed:")
            // Devices left out for one reason share a line: a desktop VM has many.
            var groups: [(subjects: [String], change: ImportChange)] = []
            for change in plan.changes {
                if let index = groups.firstIndex(where: { $0.change.change == change.change && $0.change.reason == change.reason }) {
                    groups[index].subjects.append(change.subject)
                } else {
                    groups.append(([change.subject], change))
                }
            }
            lines += groups.map { "  - \($0.subjects.joined(separator: ", ")): \($0.change.change) — \($0.change.reason)" }
        }
        let disks = plan.disks.filter { $0.output != nil }
        if !disks.isEmpty {
            lines.append("disks:")
            lines += disks.map { disk in
                "  - \(disk.target): \(disk.output!)" + (disk.size.map { ", \($0) bytes" } ?? "")
                    + (disk.converted ? " (converted from \(disk.format) \(disk.source))" : " (the source, in place)")
            }
        }
        if !written.isEmpty {
            lines.append("written:")
            lines += written.map { "  - \($0)" }
        }
        if !nextSteps.isEmpty {
            lines.append("next:")
            lines += nextSteps.enumerated().map { "  \($0.offset + 1). \($0.element)" }
        } else if !protectable {
            lines.append("nothing was written or changed but this report.")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private static func steps(_ plan: ImportPlan, _ options: ImportOptions) -> [String] {
        var steps: [String] = []
        if plan.kind == .libvirt {
            steps.append("Stop the domain for good: virsh shutdown \(plan.sourceName); virsh autostart --disable \(plan.sourceName). Never run it beside the protected VM: both would write the same disks.")
        }
        if options.primaryHost == nil || options.backupHost == nil || options.witness.isEmpty {
            steps.append("Edit the lines marked EDIT in primary.toml and backup.toml (the nodes' addresses, the witness).")
        }
        steps.append("Certificates: understudy certs init --dir certs --nodes \(options.primaryNode),\(options.backupNode); copy ca.pem and each node's own pair to \(options.certificates) on that node.")
        let files = plan.disks.compactMap(\.output) + (plan.firmware == .uefi ? [options.uefiVarsPath] : [])
        steps.append("On \(options.primaryNode): the disks\(plan.firmware == .uefi ? " and the variable store" : "") at these paths: \(files.joined(separator: ", ")); install primary.toml as /etc/understudy/\(plan.id).toml.")
        var backup = plan.disks.compactMap { disk in disk.output.map { path in "truncate -s \(disk.size.map(String.init) ?? "SIZE") '\(path.replacingOccurrences(of: "'", with: "'\\''"))'" } }
        if plan.firmware == .uefi { backup.append("copy \(options.uefiVarsPath) there") }
        steps.append("On \(options.backupNode): empty replica disks of the same sizes at the same paths (\(backup.joined(separator: "; "))); install backup.toml as /etc/understudy/\(plan.id).toml.")
        for nic in plan.nics {
            steps.append("On both hosts: ip tuntap add \(nic.tap) mode tap; ip link set \(nic.tap) master BRIDGE up (the NIC \(nic.mac) was on \(nic.connection ?? "no network"))")
        }
        steps.append("Start the backup's agent, then the primary's: systemctl enable --now understudy@\(plan.id); check with understudy status --config /etc/understudy/\(plan.id).toml")
        return steps
    }
}
