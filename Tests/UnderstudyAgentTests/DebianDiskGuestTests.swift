import Foundation
import Testing
import UnderstudyHarness
import UnderstudySystem
import UnderstudyTestTags
#if canImport(Glibc)
import Glibc
#endif

/// The Debian guest that boots from its own disks (Deploy/guest/build-debian-disk.sh): the QEMU
/// command line that boots each variant, and (`Boot`, on request) the boots themselves.
@Suite("Debian disk guest")
struct DebianDiskGuestTests {
    let guest = DebianDiskGuest(base: DebianGuest(directory: "/cache/debian"), directory: nil)

    @Test("UEFI boots on q35 with OVMF's code read-only and the VM's own variable store; BIOS on pc without flash")
    func firmwareAndMachine() throws {
        let uefi = DebianDiskGuest.Boot(firmware: .uefi, systemDisk: "/run/a/disk-uefi.img", dataDisk: "/run/a/data.img",
                                        variables: "/run/a/OVMF_VARS.fd").qemuArguments(tap: "tap0", serialLog: "/run/a/serial.log")
        #expect(value(after: "-machine", in: uefi) == "q35")
        #expect(values(after: "-drive", in: uefi).filter { $0.hasPrefix("if=pflash") } == [
            "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
            "if=pflash,format=raw,file=/run/a/OVMF_VARS.fd",
        ])
        let bios = DebianDiskGuest.Boot(firmware: .bios, systemDisk: "/run/b/disk-bios.img", dataDisk: "/run/b/data.img",
                                        variables: nil).qemuArguments(tap: "tap0", serialLog: "/run/b/serial.log")
        #expect(value(after: "-machine", in: bios) == "pc")
        #expect(!bios.joined(separator: " ").contains("pflash"))
    }

    @Test("both disks are virtio-blk, the system disk first in the boot order; the NIC has the MAC the guest matches",
          arguments: DebianDiskGuest.Firmware.allCases)
    func disksAndNIC(firmware: DebianDiskGuest.Firmware) throws {
        let arguments = DebianDiskGuest.Boot(firmware: firmware, systemDisk: "/run/system.img", dataDisk: "/run/data.img",
                                             variables: firmware == .uefi ? "/run/vars.fd" : nil)
            .qemuArguments(tap: "tap7", serialLog: "/run/serial.log", vcpus: 4)
        #expect(values(after: "-drive", in: arguments).filter { $0.hasPrefix("file=") } == [
            "file=/run/system.img,format=raw,if=none,id=disk0", "file=/run/data.img,format=raw,if=none,id=disk1",
        ])
        #expect(values(after: "-device", in: arguments) == [
            "virtio-blk-pci,drive=disk0,bootindex=0", "virtio-blk-pci,drive=disk1", "virtio-net-pci,netdev=net0,mac=52:54:00:77:00:02",
        ])
        #expect(value(after: "-netdev", in: arguments) == "tap,id=net0,ifname=tap7,script=no,downscript=no")
        #expect(value(after: "-smp", in: arguments) == "4")
        #expect(value(after: "-accel", in: arguments) == "tcg")
        #expect(value(after: "-serial", in: arguments) == "file:/run/serial.log")
    }

    @Test("the disks sit in the base guest's cache unless UNDERSTUDY_DEBIAN_DISK_DIR says otherwise")
    func paths() {
        #expect(guest.systemDisk(.bios) == "/cache/debian/disk/disk-bios.img")
        #expect(guest.systemDisk(.uefi) == "/cache/debian/disk/disk-uefi.img")
        #expect(DebianDiskGuest(base: DebianGuest(directory: "/cache/debian"), directory: "/elsewhere").dataDisk == "/elsewhere/data.img")
    }

    private func values(after option: String, in arguments: [String]) -> [String] {
        zip(arguments, arguments.dropFirst()).filter { $0.0 == option }.map(\.1)
    }

    private func value(after option: String, in arguments: [String]) -> String? {
        values(after: option, in: arguments).first
    }

    /// Boots each variant with plain QEMU (TCG, 2 vCPUs, 1 GiB) on a TAP in a `PairNetwork` and
    /// checks from the client namespace that it reached multi-user with PostgreSQL serving the
    /// bench database from the second disk. Builds the disks first when needed (the base guest
    /// too: minutes) and boots systemd twice under TCG, so it runs only with UNDERSTUDY_DEBIAN_DISK=1.
    @Suite("Debian disk guest boot", .tags(.vm), .skippedInQuickLoop, .serialized,
           .enabled(if: ProcessInfo.processInfo.environment["UNDERSTUDY_DEBIAN_DISK"] == "1",
                    "set UNDERSTUDY_DEBIAN_DISK=1: builds the guest's disks and boots each variant for minutes"))
    struct Booting {
        @Test("GRUB boots the kernel from the guest's own disk; systemd reaches the login prompt; PostgreSQL serves from /dev/vdb",
              arguments: DebianDiskGuest.Firmware.allCases)
        func bootsFromItsOwnDisk(firmware: DebianDiskGuest.Firmware) throws {
            let guest = try DebianDiskGuest.build()
            let workspace = try TemporaryDirectory("debian-disk-\(firmware)")
            defer { workspace.remove() }
            let network = try PairNetwork(tapCount: 1)
            defer { network.remove() }
            let boot = try guest.prepareBoot(firmware, in: workspace.path)
            let serialLog = "\(workspace.path)/serial.log"
            let qemuLog = "\(workspace.path)/qemu.log"
            let started = ContinuousClock.now
            let qemu = try boot.launch(tap: network.taps[0], serialLog: serialLog, log: qemuLog)
            defer {
                qemu.signalGroup(SIGKILL)
                _ = eventually(within: .seconds(10)) { qemu.exitStatus() != nil }
            }
            // Decoded leniently: firmware and GRUB write escape sequences, not always valid UTF-8.
            func read(_ path: String) -> String { String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self) }

            try guest.base.waitUntilPostgresAnswers(namespace: network.namespace, timeout: .seconds(600), failed: {
                qemu.exitStatus().map { "QEMU exited (\($0)): \(read(qemuLog).suffix(300)); console: \(read(serialLog).suffix(500))" }
            })
            let answered = ContinuousClock.now - started
            #expect(eventually(within: .seconds(120), every: .seconds(1)) { read(serialLog).contains("understudy-debian login:") },
                    "a getty on the serial console: multi-user reached")
            let loggedIn = ContinuousClock.now - started

            func query(_ sql: String) throws -> String {
                try HostCommand.run(guest.base.treeCommand(namespace: network.namespace, [
                    DebianGuest.clientProgram("psql"), "-X", "-h", DebianGuest.address, "-U", DebianGuest.user,
                    "-d", DebianGuest.database, "-Atc", sql]))
            }
            let commandLine = try query("SELECT pg_read_file('/proc/cmdline')")
            #expect(commandLine.hasPrefix("BOOT_IMAGE=/boot/vmlinuz-"), "GRUB loaded the kernel from the root file system: \(commandLine)")
            #expect(commandLine.contains("root=UUID=") && commandLine.contains("console=ttyS0"))
            let mounts = try query("SELECT pg_read_file('/proc/self/mounts')").split(separator: "\n")
            let root = firmware == .uefi ? "/dev/vda2" : "/dev/vda1"
            #expect(mounts.contains { $0.hasPrefix("\(root) / ext4 rw") }, "the root partition, mounted read-write: \(mounts)")
            #expect(mounts.contains { $0.hasPrefix("/dev/vdb /var/lib/postgresql ext4 rw") }, "the data disk: \(mounts)")
            if firmware == .uefi {
                #expect(mounts.contains { $0.hasPrefix("/dev/vda1 /boot/efi vfat") }, "the EFI system partition")
            }
            #expect(try query("SELECT current_setting('data_directory')") == "/var/lib/postgresql/15/main")
            #expect(try query("SELECT (pg_stat_file('/sys/firmware/efi', true)).isdir IS TRUE") == (firmware == .uefi ? "t" : "f"),
                    "the kernel was started by UEFI firmware exactly in the UEFI variant")
            #expect(try query("SELECT count(*) FROM pgbench_accounts") == "500000")
            print("debian disk boot \(firmware) (\(firmware.machine)): PostgreSQL answered \(answered.seconds) s, "
                  + "login prompt by \(loggedIn.seconds) s after QEMU started")
        }
    }
}
