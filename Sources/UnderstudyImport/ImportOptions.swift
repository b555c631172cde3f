/// How `understudy import` writes the pair's configuration.
public struct ImportOptions: Sendable {
    /// Where the configuration, the report, converted disks and the UEFI variable store go (absolute).
    public var outDirectory: String
    /// Converting images to raw (qcow2, VMDK, a block device) is allowed; without it they block.
    public var convertDisks = false
    /// The VM id instead of one derived from the source's name.
    public var id: String?
    /// The two nodes' certificate names and addresses; nil addresses become marked placeholders.
    public var primaryNode = "host-a"
    public var backupNode = "host-b"
    public var primaryHost: String?
    public var backupHost: String?
    /// etcd endpoints of the witness; empty: a commented [witness] table to fill in.
    public var witness: [String] = []
    public var certificates = "/etc/understudy/certs"
    /// Copied as the VM's variable store when the source has none (Debian's `ovmf`).
    public var uefiVarsTemplate = "/usr/share/OVMF/OVMF_VARS_4M.fd"

    public init(outDirectory: String) { self.outDirectory = outDirectory }

    /// What an address placeholder stands for: documentation addresses (RFC 5737), marked in the files.
    static let placeholderPrimaryHost = "192.0.2.1"
    static let placeholderBackupHost = "192.0.2.2"

    public var primaryAddress: String { primaryHost ?? Self.placeholderPrimaryHost }
    public var backupAddress: String { backupHost ?? Self.placeholderBackupHost }

    /// The files the import writes besides disks: refused when they already exist.
    public var primaryConfigurationPath: String { "\(outDirectory)/primary.toml" }
    public var backupConfigurationPath: String { "\(outDirectory)/backup.toml" }
    public var uefiVarsPath: String { "\(outDirectory)/VARS.fd" }
    public var reportPath: String { "\(outDirectory)/import-report.txt" }
}
