extension DebianDiskGuest {
    /// How the VM starts: which disk it boots and on which machine type.
    public enum Firmware: String, CaseIterable, Sendable, CustomStringConvertible {
        /// SeaBIOS (QEMU's default) reads GRUB from the MBR of `disk-bios.img`.
        case bios
        /// OVMF finds GRUB at EFI/BOOT/BOOTX64.EFI on `disk-uefi.img`'s EFI system partition.
        case uefi

        /// The cached disk's file name.
        public var diskName: String { "disk-\(rawValue).img" }

        /// `q35` for UEFI, as libvirt's UEFI VMs have it; `pc` for BIOS, so that between them the
        /// guest boots on both machine types.
        public var machine: String { self == .bios ? "pc" : "q35" }

        public var description: String { rawValue }
    }
}
