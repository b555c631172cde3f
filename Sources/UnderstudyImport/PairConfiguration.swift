import Foundation
import UnderstudyAgent

/// The two configuration files of a pair protecting an imported VM (`AgentConfiguration`'s
/// format): the same VM on both nodes, the disks at the same paths, each node's own name and
/// addresses. Values the import cannot know (addresses, the witness) are documentation
/// addresses marked `EDIT` unless the operator gave them.
public struct PairConfiguration: Sendable {
    public enum Node: Sendable { case primary, backup }

    public let plan: ImportPlan
    public let options: ImportOptions

    /// The port both nodes' `[backup]` listens on for replication.
    static let replicationPort = 7400

    public init(plan: ImportPlan, options: ImportOptions) {
        self.plan = plan
        self.options = options
    }

    /// The file for `node`.
    public func text(for node: Node) -> String {
        let (me, peer) = node == .primary ? (options.primaryNode, options.backupNode) : (options.backupNode, options.primaryNode)
        let (myAddress, peerAddress) = node == .primary ? (options.primaryAddress, options.backupAddress) : (options.backupAddress, options.primaryAddress)
        let peerGiven = (node == .primary ? options.backupHost : options.primaryHost) != nil
        let myGiven = (node == .primary ? options.primaryHost : options.backupHost) != nil
        var out: [String] = [
            // The name is the source file's: quoted and escaped, a line break in it cannot end the comment.
            "# Written by `understudy import \(plan.kind.rawValue)` from \(TOMLValue.string(plan.sourceName).tomlText): see import-report.txt beside it.",
            "# The \(node == .primary ? "primary" : "backup") node of VM \(plan.id) on the pair's first start. Install it as",
            "# /etc/understudy/\(plan.id).toml on \(me), then: systemctl enable --now understudy@\(plan.id)",
            "# Lines marked EDIT hold placeholders to replace first.",
            "",
            "[node]",
            entry("name", .string(me), "this node's certificate name (understudy certs init --nodes \(options.primaryNode),\(options.backupNode))"),
            entry("certificates", .string(options.certificates), "ca.pem, \(me).pem, \(me).key"),
            entry("role", .string(node == .primary ? "primary" : "backup"), "the role on the pair's first start; later the node's record decides"),
            entry("state_dir", .string("/var/lib/understudy/\(plan.id)")),
            entry("on_stop", .string("switchover")),
            "",
            "[peer]",
            entry("name", .string(peer)),
            entry("address", .string("\(peerAddress):\(Self.replicationPort)"),
                  (peerGiven ? "" : "EDIT: ") + "\(peer)'s [backup] listen, on the replication link"),
            "",
            "[vm]",
        ]
        out += vmEntries(node)
        if !plan.nics.isEmpty {
            out += ["", "[network]"]
            let comment = "this node's TAP\(plan.nics.count == 1 ? "" : "s"), bridged to the VM's network (import-report.txt)"
            out.append(plan.nics.count == 1 ? entry("tap", .string(plan.nics[0].tap), comment)
                                            : entry("taps", .array(plan.nics.map { .string($0.tap) }), comment))
        }
        out += [
            "",
            "[replication]",
            entry("interval_ms", .integer(25)),
            entry("max_epochs_in_flight", .integer(4)),
            "",
            "[backup]",
            entry("listen", .string("\(myAddress):\(Self.replicationPort)"), (myGiven ? "" : "EDIT: ") + "this node's address on the replication link"),
            entry("replica_dir", .string("/dev/shm/understudy/\(plan.id)"), "tmpfs: QEMU maps the replica as the VM's RAM on takeover"),
            "",
            "[heartbeat]",
            entry("interval_ms", .integer(40)),
            entry("missed", .integer(5)),
            entry("min_timeout_ms", .integer(200)),
            "",
            "[failover]",
            entry("automatic", .boolean(true), "takes effect with a witness: without one the backup waits for `understudy failover --force`"),
            entry("grace_ms", .integer(1000)),
            entry("policy", .string("availability")),
            entry("reconnect_ms", .integer(1000)),
            "",
        ]
        if options.witness.isEmpty {
            out += [
                "# EDIT: a witness (etcd, Deploy/witness/) on a third machine makes automatic failover safe:",
                "# [witness]",
                "# endpoints = [\"192.0.2.3:2379\"]",
                "# lease_ttl_s = 2",
            ]
        } else {
            out += ["[witness]", entry("endpoints", .array(options.witness.map { .string($0) })), entry("lease_ttl_s", .integer(2))]
        }
        return out.joined(separator: "\n") + "\n"
    }

    private func vmEntries(_ node: Node) -> [String] {
        var out = [
            entry("id", .string(plan.id)),
            entry("memory_mib", .integer(Int64(plan.memoryMiB))),
            entry("vcpus", .integer(Int64(plan.vcpus))),
            entry("machine", .string(plan.machine)),
        ]
        let images = plan.disks.compactMap(\.output)
        let diskComment = node == .primary ? "raw, in guest order" : "the replica disks: the primary's paths and sizes (truncate -s, import-report.txt)"
        if images.count == 1 {
            out.append(entry("disk_image", .string(images[0]), diskComment))
        } else if !images.isEmpty {
            out.append(entry("disks", .array(images.map { .string($0) }), diskComment))
        }
        if plan.firmware == .uefi {
            out.append(entry("firmware", .string("uefi")))
            out.append(entry("uefi_vars", .string(options.uefiVarsPath), "this VM's own variable store, replicated like a disk"))
        }
        if let kernel = plan.kernel { out.append(entry("kernel", .string(kernel))) }
        if let initrd = plan.initrd { out.append(entry("initrd", .string(initrd))) }
        if let commandLine = plan.commandLine { out.append(entry("cmdline", .string(commandLine))) }
        if plan.nics.count == 1 {
            out.append(entry("mac", .string(plan.nics[0].mac)))
        } else if !plan.nics.isEmpty {
            out.append(entry("macs", .array(plan.nics.map { .string($0.mac) }), "one per NIC, in guest order"))
        }
        if plan.rng { out.append(entry("rng", .boolean(true), "virtio-rng")) }
        return out
    }

    private func entry(_ key: String, _ value: TOMLValue, _ comment: String = "") -> String {
        let text = "\(key) = \(value.tomlText)"
        guard !comment.isEmpty else { return text }
        return text.padding(toLength: max(text.count + 1, 38), withPad: " ", startingAt: 0) + "# " + comment
    }
}
