import Foundation
import Testing
import UnderstudyAgent
import UnderstudyHarness
import UnderstudyQEMU
import UnderstudySystem
@testable import UnderstudyImport

/// The import commands' code path (`understudy import libvirt|ovf`), on real images made with
/// qemu-img and tar in a temporary directory.
@Suite("import command")
struct VMImporterTests {
    /// A domain with one disk of `format` at `disk` and one virtio NIC: only keys today's
    /// AgentConfiguration reads (BIOS, one NIC, no rng).
    static func domain(disk: String, format: String) -> String {
        """
        <domain type='kvm'><name>web-1</name><memory unit='MiB'>256</memory><vcpu>2</vcpu>
        <os><type arch='x86_64' machine='q35'>hvm</type></os>
        <devices>
          <disk type='file' device='disk'><driver name='qemu' type='\(format)'/><source file='\(disk)'/><target dev='vda' bus='virtio'/></disk>
          <interface type='bridge'><mac address='52:54:00:12:34:56'/><source bridge='br0'/><model type='virtio'/></interface>
        </devices></domain>
        """
    }

    @Test func aQcow2DiskIsRefusedWithoutConvertDisksAndNothingIsWrittenButTheReport() throws {
        try withTemporaryDirectory("import-refuse") { directory in
            let disk = "\(directory)/web-1.qcow2"
            try HostCommand.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, "64M"])
            let before = try Data(contentsOf: URL(fileURLWithPath: disk))
            try Self.domain(disk: disk, format: "qcow2").write(toFile: "\(directory)/web-1.xml", atomically: true, encoding: .utf8)
            let out = "\(directory)/out"
            let report = try VMImporter.importLibvirt(file: "\(directory)/web-1.xml", options: ImportOptions(outDirectory: out))
            #expect(!report.protectable)
            #expect(report.plan.blockers.map(\.subject) == ["disk vda (vda: \(disk))"])
            #expect(report.text.contains("REFUSED") && report.text.contains("--convert-disks"))
            #expect(try FileManager.default.contentsOfDirectory(atPath: out) == ["import-report.txt"])
            #expect(try String(contentsOfFile: "\(out)/import-report.txt", encoding: .utf8) == report.text)
            #expect(try Data(contentsOf: URL(fileURLWithPath: disk)) == before)
        }
    }

    @Test func withConvertDisksTheDiskBecomesRawAndTheConfigurationLoads() throws {
        try withTemporaryDirectory("import-convert") { directory in
            let disk = "\(directory)/web-1.qcow2"
            try HostCommand.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, "64M"])
            try HostCommand.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 1M 64k", disk])
            try Self.domain(disk: disk, format: "qcow2").write(toFile: "\(directory)/web-1.xml", atomically: true, encoding: .utf8)
            var options = ImportOptions(outDirectory: "\(directory)/out")
            options.convertDisks = true
            let report = try VMImporter.importLibvirt(file: "\(directory)/web-1.xml", options: options)
            #expect(report.protectable, "\(report.text)")
            let raw = "\(directory)/out/vda.raw"
            #expect(try FileManager.default.attributesOfItem(atPath: raw)[.size] as? UInt64 == 64 << 20)
            #expect(try HostCommand.run(["qemu-io", "-f", "raw", "-c", "read -P 0x5a 1M 64k", raw]).contains("read 65536/65536"))
            #expect(report.plan.disks[0].size == 64 << 20)
            #expect(report.written == [raw, "\(directory)/out/primary.toml", "\(directory)/out/backup.toml", "\(directory)/out/import-report.txt"])
            #expect(report.nextSteps.contains { $0.contains("truncate -s 67108864 '\(raw)'") })
            // The keys AgentConfiguration reads today; VMImporterTests.fullConfiguration... covers the new ones.
            for file in ["primary.toml", "backup.toml"] {
                let configuration = try AgentConfiguration(contentsOfFile: "\(directory)/out/\(file)")
                #expect(configuration.vm.id == "web-1" && configuration.vm.machine == "q35" && configuration.vm.vcpus == 2)
                #expect(configuration.vm.memoryBytes == 256 << 20 && configuration.vm.diskImages == [raw] && configuration.vm.diskSizes == [64 << 20])
                #expect(configuration.nics == [GuestDevices.NIC(tap: "tap-web-1-0", mac: "52:54:00:12:34:56")])
                #expect(configuration.role == (file == "primary.toml" ? .primary : .backup))
                _ = try configuration.primary()
                _ = try configuration.backup()
            }
            let again = try VMImporter.importLibvirt(file: "\(directory)/web-1.xml", options: options)
            #expect(!again.protectable && again.plan.blockers.allSatisfy { $0.reason.contains("exists already") })
        }
    }

    /// UEFI, two disks, two NICs and virtio-rng: the keys the lead's VM model adds (firmware,
    /// uefi_vars, macs, rng, taps). Read as TOML here; once AgentConfiguration knows them, parse
    /// the files with `AgentConfiguration(contentsOfFile:)` and check `vm` the same way.
    @Test func fullConfigurationWithUEFITwoDisksAndTwoNICs() throws {
        try withTemporaryDirectory("import-full") { directory in
            var xml = try Fixtures.text("q35-ovmf.xml")
            try HostCommand.run(["truncate", "-s", "32M", "\(directory)/system.img", "\(directory)/data.img"])
            // The 4 MiB OVMF build's store size: the node refuses another with that firmware.
            try Data(repeating: 7, count: 540_672).write(to: URL(fileURLWithPath: "\(directory)/db-1_VARS.fd"))
            xml = xml.replacingOccurrences(of: "/var/lib/libvirt/images/db-1.img", with: "\(directory)/system.img")
                .replacingOccurrences(of: "/var/lib/libvirt/qemu/nvram/db-1_VARS.fd", with: "\(directory)/db-1_VARS.fd")
                .replacingOccurrences(of: "<memballoon model='none'/>", with: """
                    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='\(directory)/data.img'/><target dev='vdb' bus='virtio'/></disk>
                    <interface type='bridge'><mac address='52:54:00:1f:2e:3e'/><source bridge='br-back'/><model type='e1000e'/></interface>
                    """)
            try xml.write(toFile: "\(directory)/db-1.xml", atomically: true, encoding: .utf8)
            var options = ImportOptions(outDirectory: "\(directory)/out")
            options.witness = ["10.0.0.3:2379"]
            let report = try VMImporter.importLibvirt(file: "\(directory)/db-1.xml", options: options)
            #expect(report.protectable, "\(report.text)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: "\(directory)/out/VARS.fd")) == Data(repeating: 7, count: 540_672))
            let document = try TOMLDocument(contentsOfFile: "\(directory)/out/primary.toml")
            #expect(try document.strings("vm.disks") == ["\(directory)/system.img", "\(directory)/data.img"])
            #expect(try document.string("vm.firmware") == "uefi" && document.string("vm.uefi_vars") == "\(directory)/out/VARS.fd")
            #expect(try document.strings("vm.macs") == ["52:54:00:1f:2e:3d", "52:54:00:1f:2e:3e"])
            #expect(try document.strings("network.taps") == ["tap-db-1-0", "tap-db-1-1"])
            #expect(try document.bool("vm.rng") == true && document.string("vm.machine") == "pc-q35-7.2" && document.integer("vm.vcpus") == 4)
            #expect(try document.strings("witness.endpoints") == ["10.0.0.3:2379"])
            #expect(try String(contentsOfFile: "\(directory)/out/primary.toml", encoding: .utf8).contains("EDIT: host-b's [backup] listen"))
            #expect(report.text.contains("interface 52:54:00:1f:2e:3e (e1000e): virtio-net"))
            // The node reads the written file as the VM it describes.
            let configuration = try AgentConfiguration(contentsOfFile: "\(directory)/out/primary.toml")
            #expect(configuration.vm.diskImages == ["\(directory)/system.img", "\(directory)/data.img"])
            #expect(configuration.vm.firmware == .uefi(code: VMDescription.defaultUEFICode, variables: "\(directory)/out/VARS.fd"))
            #expect(configuration.identity.diskSizes == [32 << 20, 32 << 20, 540_672], "the variable store replicated after the disks")
            #expect(configuration.nics == [GuestDevices.NIC(tap: "tap-db-1-0", mac: "52:54:00:1f:2e:3d"),
                                           GuestDevices.NIC(tap: "tap-db-1-1", mac: "52:54:00:1f:2e:3e")])
            #expect(configuration.vm.randomNumberGenerator && configuration.vm.vcpus == 4 && configuration.vm.machine == "pc-q35-7.2")
        }
    }

    @Test func anOVAIsReadInPlaceAndItsVMDKConvertedOnlyWithConvertDisks() throws {
        try withTemporaryDirectory("import-ova") { directory in
            try HostCommand.run(["qemu-img", "create", "-q", "-f", "vmdk", "\(directory)/appliance-disk1.vmdk", "32M"])
            try Fixtures.text("appliance.ovf").write(toFile: "\(directory)/appliance.ovf", atomically: true, encoding: .utf8)
            // The envelope first, as DSP0243 requires of an OVA.
            try HostCommand.run(["tar", "-C", directory, "-cf", "\(directory)/appliance.ova", "appliance.ovf", "appliance-disk1.vmdk"])
            var options = ImportOptions(outDirectory: "\(directory)/out")
            options.uefiVarsTemplate = "\(directory)/VARS-template.fd"
            try Data(count: 8192).write(to: URL(fileURLWithPath: options.uefiVarsTemplate))
            let refused = try VMImporter.importOVF(file: "\(directory)/appliance.ova", options: options)
            #expect(refused.plan.blockers.map(\.subject) == ["disk vda (vmdisk1: appliance-disk1.vmdk)"])
            #expect(try FileManager.default.contentsOfDirectory(atPath: options.outDirectory) == ["import-report.txt"])
            options.convertDisks = true
            let report = try VMImporter.importOVF(file: "\(directory)/appliance.ova", options: options)
            #expect(report.protectable, "\(report.text)")
            #expect(try FileManager.default.attributesOfItem(atPath: "\(directory)/out/vda.raw")[.size] as? UInt64 == 32 << 20)
            #expect(try FileManager.default.contentsOfDirectory(atPath: options.outDirectory).sorted()
                    == ["VARS.fd", "backup.toml", "import-report.txt", "primary.toml", "vda.raw"], "the unpacked VMDK is removed")
            let document = try TOMLDocument(contentsOfFile: "\(directory)/out/backup.toml")
            #expect(try document.string("vm.disk_image") == "\(directory)/out/vda.raw" && document.integer("vm.memory_mib") == 1024)

            // The loose .ovf beside its VMDK reads the same.
            let loose = try VMImporter.importOVF(file: "\(directory)/appliance.ovf", options: ImportOptions(outDirectory: "\(directory)/loose"))
            #expect(loose.plan.blockers.map(\.subject).first == "disk vda (vmdisk1: \(directory)/appliance-disk1.vmdk)")
        }
    }

    /// A raw disk inside an OVA is a member of the archive, not a file a disk can be: it is
    /// written out like a converted one, and only with --convert-disks.
    @Test func aRawDiskInAnOVAIsWrittenOutOnlyWithConvertDisks() throws {
        try withTemporaryDirectory("import-ova-raw") { directory in
            try HostCommand.run(["truncate", "-s", "32M", "\(directory)/appliance-disk1.img"])
            try Fixtures.text("appliance.ovf").replacingOccurrences(of: "appliance-disk1.vmdk", with: "appliance-disk1.img")
                .replacingOccurrences(of: "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized", with: "raw")
                .write(toFile: "\(directory)/appliance.ovf", atomically: true, encoding: .utf8)
            try HostCommand.run(["tar", "-C", directory, "-cf", "\(directory)/appliance.ova", "appliance.ovf", "appliance-disk1.img"])
            var options = ImportOptions(outDirectory: "\(directory)/out")
            options.uefiVarsTemplate = "\(directory)/VARS-template.fd"
            try Data(count: 8192).write(to: URL(fileURLWithPath: options.uefiVarsTemplate))
            let refused = try VMImporter.importOVF(file: "\(directory)/appliance.ova", options: options)
            #expect(refused.plan.blockers.first?.reason.contains("raw inside the archive") == true, "\(refused.text)")
            options.convertDisks = true
            let report = try VMImporter.importOVF(file: "\(directory)/appliance.ova", options: options)
            #expect(report.protectable, "\(report.text)")
            #expect(try FileManager.default.attributesOfItem(atPath: "\(directory)/out/vda.raw")[.size] as? UInt64 == 32 << 20)
            let document = try TOMLDocument(contentsOfFile: "\(directory)/out/primary.toml")
            #expect(try document.string("vm.disk_image") == "\(directory)/out/vda.raw", "an absolute path to a file that exists")
        }
    }

    @Test func aBrokenDomainFileIsAnErrorNamingTheLine() throws {
        try withTemporaryDirectory("import-broken") { directory in
            try "<domain>\n<name>x</nam>\n</domain>".write(toFile: "\(directory)/x.xml", atomically: true, encoding: .utf8)
            #expect {
                try VMImporter.importLibvirt(file: "\(directory)/x.xml", options: ImportOptions(outDirectory: "\(directory)/out"))
            } throws: { error in
                "\(error)".contains("x.xml: line 2: </nam> closes <name>")
            }
        }
    }
}
