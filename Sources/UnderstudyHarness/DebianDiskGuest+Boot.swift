import Foundation
import UnderstudySystem

extension DebianDiskGuest {
    /// One VM's own copies of the disks (and of OVMF's variable store), and the plain QEMU that
    /// boots them: no agent, no NBD, no output gate.
    public struct Boot: Sendable {
        public let firmware: Firmware
        /// The copy of the system disk (`/dev/vda` in the guest).
        public let systemDisk: String
        /// The copy of the data disk (`/dev/vdb`: /var/lib/postgresql).
        public let dataDisk: String
        /// The copy of OVMF's variable store, the second pflash; nil for BIOS.
        public let variables: String?

        /// Files already in place (`DebianDiskGuest.prepareBoot` copies them); `variables` only for UEFI.
        public init(firmware: Firmware, systemDisk: String, dataDisk: String, variables: String?) {
            precondition((variables != nil) == (firmware == .uefi), "OVMF needs a variable store; SeaBIOS has none")
            self.firmware = firmware
            self.systemDisk = systemDisk
            self.dataDisk = dataDisk
            self.variables = variables
        }

        /// QEMU's arguments (after the program name): TCG, `firmware.machine`, both disks as
        /// virtio-blk with the system disk first in the boot order, one virtio NIC with
        /// `DebianDiskGuest.mac` on TAP `tap`, the serial console into `serialLog`.
        public func qemuArguments(tap: String, serialLog: String, vcpus: Int = 2,
                                  memoryMiB: Int = DebianGuest.memoryMiB) -> [String] {
            var arguments = ["-accel", "tcg", "-machine", firmware.machine, "-m", "\(memoryMiB)", "-smp", "\(vcpus)",
                             "-nodefaults", "-no-user-config", "-vga", "none", "-display", "none", "-monitor", "none",
                             "-serial", "file:\(serialLog)"]
            if let variables {
                arguments += ["-drive", "if=pflash,format=raw,readonly=on,file=\(DebianDiskGuest.ovmfCode)",
                              "-drive", "if=pflash,format=raw,file=\(variables)"]
            }
            for (index, disk) in [systemDisk, dataDisk].enumerated() {
                arguments += ["-drive", "file=\(disk),format=raw,if=none,id=disk\(index)",
                              "-device", "virtio-blk-pci,drive=disk\(index)" + (index == 0 ? ",bootindex=0" : "")]
            }
            arguments += ["-netdev", "tap,id=net0,ifname=\(tap),script=no,downscript=no",
                          "-device", "virtio-net-pci,netdev=net0,mac=\(DebianDiskGuest.mac)"]
            return arguments
        }

        /// Starts QEMU (found on PATH) in a process group of its own, its output into `log`; stop
        /// it with `signalGroup` and reap it with `exitStatus`.
        public func launch(tap: String, serialLog: String, log: String, vcpus: Int = 2) throws -> SpawnedProcess {
            try SpawnedProcess(executable: "/usr/bin/env",
                               arguments: ["env", "qemu-system-x86_64"] + qemuArguments(tap: tap, serialLog: serialLog, vcpus: vcpus),
                               environment: ProcessInfo.processInfo.environment, output: log)
        }
    }
}
