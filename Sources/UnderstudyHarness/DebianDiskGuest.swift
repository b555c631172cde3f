import Foundation
import UnderstudySystem

/// The Debian 12 guest of `DebianGuest` as people's VMs boot: from its own partitioned disk with
/// GRUB, under SeaBIOS or UEFI (OVMF), with PostgreSQL's data on a second disk.
/// Deploy/guest/build-debian-disk.sh makes the disks from `DebianGuest`'s build tree
/// (Deploy/guest/README.md): `disk-bios.img` (MBR, GRUB i386-pc), `disk-uefi.img` (GPT, an EFI
/// system partition with GRUB at the removable path), and `data.img` (ext4, mounted at
/// /var/lib/postgresql by UUID). GRUB boots the cloud kernel with `root=UUID=… ro console=ttyS0 quiet`.
///
/// The guest takes `DebianGuest.address` on the NIC whose MAC is `mac`, whatever the NIC is named
/// on the machine type. A run boots copies (`prepareBoot`), never the cached disks.
public struct DebianDiskGuest: Sendable {
    /// The guest the disks are made from: its tree runs the clients (`DebianGuest.treeCommand`).
    public let base: DebianGuest
    /// The script's output directory: the three disks and `ready` (written last).
    public let directory: String

    /// The MAC the guest's network configuration matches: the NIC that gets `DebianGuest.address`.
    public static let mac = "52:54:00:77:00:02"
    /// OVMF's code (Debian's `ovmf`, 4 MiB flash layout), mapped read-only.
    public static let ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
    /// The empty variable store that goes with `ovmfCode`; each VM writes to a copy of its own.
    public static let ovmfVariablesTemplate = "/usr/share/OVMF/OVMF_VARS_4M.fd"

    /// `UNDERSTUDY_DEBIAN_DISK_DIR`, or `disk/` in the base guest's directory (the script's default).
    public init(base: DebianGuest = DebianGuest(),
                directory: String? = ProcessInfo.processInfo.environment["UNDERSTUDY_DEBIAN_DISK_DIR"]) {
        self.base = base
        self.directory = directory ?? "\(base.directory)/disk"
    }

    /// The cached system disk that boots with `firmware`.
    public func systemDisk(_ firmware: Firmware) -> String { "\(directory)/\(firmware.diskName)" }
    /// The cached data disk, shared by both variants' builds (each run boots a copy).
    public var dataDisk: String { "\(directory)/data.img" }

    /// The build finished (its stamp and all three disks exist) and the base guest's tree is there.
    public var isBuilt: Bool {
        base.isBuilt && (["\(directory)/ready", dataDisk] + Firmware.allCases.map(systemDisk))
            .allSatisfy { FileManager.default.fileExists(atPath: $0) }
    }

    /// Runs Deploy/guest/build-debian-disk.sh of this checkout, which builds the base guest too
    /// when it is missing (minutes) and does nothing when both are ready; returns the guest.
    public static func build(base: DebianGuest = DebianGuest()) throws -> DebianDiskGuest {
        let script = CounterGuestImage.checkout.appendingPathComponent("Deploy/guest/build-debian-disk.sh").path
        let output = try HostCommand.execute("/bin/bash", [script])
        guard output.status == 0 else {
            throw HarnessError("\(script) failed (exit \(output.status)): "
                               + output.stderr.split(separator: "\n").suffix(3).joined(separator: " | "))
        }
        let guest = DebianDiskGuest(base: base, directory: output.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        guard guest.isBuilt else { throw HarnessError("\(script) left no complete guest in \(guest.directory)") }
        return guest
    }

    /// Copies the disks for `firmware`, and for UEFI OVMF's empty variable store, into `directory`
    /// (sparse): one VM's own files.
    public func prepareBoot(_ firmware: Firmware, in directory: String) throws -> Boot {
        let boot = Boot(firmware: firmware, systemDisk: "\(directory)/\(firmware.diskName)", dataDisk: "\(directory)/data.img",
                        variables: firmware == .uefi ? "\(directory)/OVMF_VARS.fd" : nil)
        try HostCommand.run(["cp", "--sparse=always", systemDisk(firmware), boot.systemDisk])
        try HostCommand.run(["cp", "--sparse=always", dataDisk, boot.dataDisk])
        if let variables = boot.variables { try HostCommand.run(["cp", Self.ovmfVariablesTemplate, variables]) }
        return boot
    }
}
