import Testing
import UnderstudyAgent
@testable import UnderstudyImport

@Suite("libvirt domain import")
struct LibvirtDomainImportTests {
    let options = ImportOptions(outDirectory: "/srv/import/web-1")

    @Test func virtInstallDefaultsTakeOverMemoryCPUsAndChangeWhatTheModelLacks() throws {
        let plan = try LibvirtDomainImport.plan(xml: Fixtures.bytes("virt-install-defaults.xml"))
        #expect(plan.isProtectable, "\(plan.blockers)")
        #expect(plan.id == "web-1" && plan.memoryMiB == 2048 && plan.vcpus == 2 && plan.machine == "pc-i440fx-7.2")
        #expect(plan.firmware == .bios && plan.rng)
        #expect(plan.disks.map(\.target) == ["vda"] && plan.disks[0].format == "qcow2")
        #expect(plan.nics == [ImportedNIC(mac: "52:54:00:6b:3c:58", tap: "tap-web-1-0", connection: "libvirt network default, bridge virbr0")])
        let changed = plan.changes.map(\.subject)
        for subject in ["interface 52:54:00:6b:3c:58 (e1000)", "input tablet", "graphics spice", "video qxl", "sound ich6", "<cpu>",
                        "channel org.qemu.guest_agent.0", "channel spicevmc", "cdrom hdc", "memballoon virtio", "redirdev usb spicevmc"] {
            #expect(changed.contains(subject), "no change for \(subject) in \(changed)")
        }
        #expect(plan.changes.first { $0.subject.hasSuffix("(e1000)") }?.change == "virtio-net")
    }

    @Test func aQcow2DiskBlocksWithoutConvertDisksAndIsConvertedIntoTheOutputWithIt() throws {
        let plan = try LibvirtDomainImport.plan(xml: Fixtures.bytes("virt-install-defaults.xml"))
        let facts = ImportFacts(images: ["/var/lib/libvirt/images/web-1.qcow2": .init(virtualSize: 20 << 30)])
        let refused = plan.resolved(facts: facts, options: options)
        #expect(refused.blockers.map(\.subject) == ["disk vda (vda: /var/lib/libvirt/images/web-1.qcow2)"])
        #expect(refused.blockers[0].reason.contains("--convert-disks"))
        var converting = options
        converting.convertDisks = true
        let resolved = plan.resolved(facts: facts, options: converting)
        #expect(resolved.isProtectable)
        #expect(resolved.disks[0].output == "/srv/import/web-1/vda.raw" && resolved.disks[0].converted && resolved.disks[0].size == 20 << 30)
    }

    @Test func q35WithOVMFBecomesUEFIWithTheDomainsOwnVariableStore() throws {
        let plan = try LibvirtDomainImport.plan(xml: Fixtures.bytes("q35-ovmf.xml"))
        #expect(plan.isProtectable, "\(plan.blockers)")
        #expect(plan.machine == "pc-q35-7.2" && plan.firmware == .uefi && plan.memoryMiB == 4096 && plan.vcpus == 4 && plan.rng)
        #expect(plan.uefiVarsSource == "/var/lib/libvirt/qemu/nvram/db-1_VARS.fd")
        #expect(plan.changes.contains { $0.subject == "disk sda (sata)" && $0.change == "virtio-blk" })
        #expect(!plan.changes.contains { $0.subject == "Secure Boot" })
        let facts = ImportFacts(images: ["/var/lib/libvirt/images/db-1.img": .init(virtualSize: 8 << 30)],
                                existingPaths: ["/var/lib/libvirt/qemu/nvram/db-1_VARS.fd", options.uefiVarsTemplate])
        let resolved = plan.resolved(facts: facts, options: options)
        #expect(resolved.isProtectable)
        #expect(resolved.uefiVarsCopiedFrom == "/var/lib/libvirt/qemu/nvram/db-1_VARS.fd")
        #expect(resolved.disks[0].output == "/var/lib/libvirt/images/db-1.img" && !resolved.disks[0].converted)
        let withoutStore = plan.resolved(facts: ImportFacts(images: facts.images, existingPaths: [options.uefiVarsTemplate]), options: options)
        #expect(withoutStore.uefiVarsCopiedFrom == options.uefiVarsTemplate)
        #expect(withoutStore.changes.contains { $0.subject == "UEFI variable store" })
        let noOVMF = plan.resolved(facts: ImportFacts(images: facts.images), options: options)
        #expect(noOVMF.blockers.map(\.subject) == ["UEFI variable store"])
    }

    @Test func twoDisksAndTwoNICsKeepTheirOrderAndWriteListsInBothFiles() throws {
        let plan = try LibvirtDomainImport.plan(xml: Fixtures.bytes("two-disks-two-nics.xml"))
        #expect(plan.isProtectable, "\(plan.blockers)")
        #expect(plan.id == "app-server-2")
        #expect(plan.changes.contains { $0.subject == "VM id" })
        #expect(plan.memoryMiB == 1000 && plan.vcpus == 2 && plan.machine == "q35")
        #expect(plan.kernel == "/var/lib/understudy/app/vmlinuz" && plan.commandLine == "console=ttyS0 root=/dev/vda rw")
        #expect(plan.disks.map(\.source) == ["/srv/vm/app-system.raw", "/srv/vm/app-data.raw"])
        #expect(plan.nics.map(\.mac) == ["52:54:00:aa:bb:01", "52:54:00:aa:bb:02"])
        // "tap-app-server-2-0" would not fit an interface name (15 bytes): a hash of the id stands in.
        let taps = plan.nics.map(\.tap)
        #expect(taps.allSatisfy { $0.hasPrefix("tap") && $0.utf8.count <= 15 } && taps[0].dropLast() == taps[1].dropLast() && taps[0] != taps[1], "\(taps)")
        let facts = ImportFacts(images: ["/srv/vm/app-system.raw": .init(virtualSize: 4 << 30), "/srv/vm/app-data.raw": .init(virtualSize: 1 << 30)],
                                existingPaths: ["/var/lib/understudy/app/vmlinuz", "/var/lib/understudy/app/initrd.img"])
        let resolved = plan.resolved(facts: facts, options: options)
        #expect(resolved.isProtectable, "\(resolved.blockers)")
        var named = options
        named.primaryHost = "10.0.0.1"
        named.backupHost = "10.0.0.2"
        let pair = PairConfiguration(plan: resolved, options: named)
        for (node, listen, peer) in [(PairConfiguration.Node.primary, "10.0.0.1:7400", "10.0.0.2:7400"), (.backup, "10.0.0.2:7400", "10.0.0.1:7400")] {
            let document = try TOMLDocument(parsing: pair.text(for: node), source: "\(node).toml")
            #expect(try document.strings("vm.disks") == ["/srv/vm/app-system.raw", "/srv/vm/app-data.raw"])
            #expect(try document.strings("vm.macs") == ["52:54:00:aa:bb:01", "52:54:00:aa:bb:02"])
            #expect(try document.strings("network.taps") == resolved.nics.map(\.tap))
            #expect(try document.string("vm.machine") == "q35")
            #expect(try document.integer("vm.vcpus") == 2)
            #expect(try document.string("backup.listen") == listen && document.string("peer.address") == peer)
            #expect(try document.string("node.role") == (node == .primary ? "primary" : "backup"))
            #expect(document.value("vm.firmware") == nil && document.value("vm.rng") == nil)
        }
        #expect(!pair.text(for: .primary).contains("EDIT: host-b"))
    }

    @Test func unsupportedDevicesBlockWithTheirNames() throws {
        let plan = try LibvirtDomainImport.plan(xml: Fixtures.bytes("unsupported-devices.xml"))
        #expect(!plan.isProtectable)
        let subjects = plan.blockers.map(\.subject)
        #expect(subjects == [
            "disk vdb (/var/lib/libvirt/images/cluster-shared.img)",
            "cdrom sda (/var/lib/libvirt/images/debian-12.iso)",
            "disk vdc (rbd pool/legacy-data)",
            "hostdev pci (domain=0x0000 bus=0x03 slot=0x00 function=0x0)",
            "redirdev usb",
            "channel unix org.example.backup.0",
            "filesystem share",
            "interface 52:54:00:00:00:09",
        ])
        #expect(plan.blockers[0].reason.contains("shared disk"))
        #expect(plan.blockers[1].reason.contains("no CD-ROM"))
        #expect(plan.blockers[3].reason.contains("passthrough"))
        #expect(plan.blockers[7].reason.contains("vhost-user"))
        #expect(plan.disks.map(\.source) == ["/var/lib/libvirt/images/legacy.img"])
    }

    @Test func theBootDiskComesFirst() throws {
        let xml = """
            <domain><name>b</name><memory>65536</memory><os><type>hvm</type></os><devices>
            <disk type='file' device='disk'><source file='/data.raw'/><target dev='sda' bus='scsi'/><boot order='2'/></disk>
            <disk type='file' device='disk'><source file='/system.raw'/><target dev='sdb' bus='scsi'/><boot order='1'/></disk>
            </devices></domain>
            """
        let plan = try LibvirtDomainImport.plan(xml: Array(xml.utf8))
        #expect(plan.disks.map(\.source) == ["/system.raw", "/data.raw"] && plan.disks.map(\.target) == ["vda", "vdb"])
        #expect(plan.changes.contains { $0.subject == "disk sdb" && $0.change == "the first disk" })
        let twice = try LibvirtDomainImport.plan(xml: Array(xml.replacingOccurrences(of: "/data.raw", with: "/system.raw").utf8))
        let resolved = twice.resolved(facts: ImportFacts(images: ["/system.raw": .init(virtualSize: 1 << 20)]), options: ImportOptions(outDirectory: "/out"))
        #expect(resolved.blockers.map(\.subject) == ["disks"])
    }

    @Test func unknownDevicesAndFirmwareBlock() throws {
        let xml = """
            <domain type='kvm'><name>x</name><memory>65536</memory>
            <os><type machine='microvm'>hvm</type><loader type='rom'>/usr/share/seabios/bios-custom.bin</loader></os>
            <devices><tpm model='tpm-crb'/><gadget/><disk type='file' device='cdrom'><source file='/x.iso'/><target dev='hdc'/></disk></devices></domain>
            """
        let plan = try LibvirtDomainImport.plan(xml: Array(xml.utf8))
        #expect(plan.blockers.map(\.subject) == ["machine microvm", "firmware rom", "tpm tpm-crb", "<gadget>", "cdrom hdc (/x.iso)"])
        #expect(plan.blockers[4].reason.contains("read-write CD-ROM"))
    }

    @Test func memoryIsRoundedUpToTwoMiBAndUnitsAreRead() throws {
        let plan = try LibvirtDomainImport.plan(xml: Array("<domain><name>m</name><memory unit='MB'>1000</memory><os><type>hvm</type></os></domain>".utf8))
        #expect(plan.memoryMiB == 954)
        #expect(plan.changes.contains { $0.subject == "<memory>" })
        #expect(LibvirtDomainImport.bytes("3", unit: "GiB") == 3 << 30)
        #expect(LibvirtDomainImport.bytes("18446744073709551615", unit: "KiB") == nil)
        let huge = try LibvirtDomainImport.plan(xml: Array("<domain><name>m</name><memory unit='b'>18446744073709551615</memory><os><type>hvm</type></os></domain>".utf8))
        #expect(huge.blockers.map(\.subject) == ["<memory>"])
    }

    @Test func idsAreSanitisedOrGiven() throws {
        #expect(ImportPlan.sanitisedID("web 1 (prod)") == "web-1-prod")
        #expect(ImportPlan.sanitisedID("--x") == "x")
        #expect(ImportPlan.sanitisedID("数据库") == nil)
        #expect(ImportPlan.sanitisedID(String(repeating: "a", count: 80))?.count == 63)
        let unnamed = try LibvirtDomainImport.plan(xml: Array("<domain><name>数据库</name><memory>65536</memory><os><type>hvm</type></os></domain>".utf8))
        #expect(unnamed.blockers.map(\.subject) == ["name \"数据库\""])
        let given = try LibvirtDomainImport.plan(xml: Array("<domain><name>数据库</name><memory>65536</memory><os><type>hvm</type></os></domain>".utf8), id: "db")
        #expect(given.isProtectable && given.id == "db")
    }

    @Test func aNotDomainDocumentIsAnError() {
        #expect(throws: MarkupError.self) { try LibvirtDomainImport.plan(xml: Array("<Envelope/>".utf8)) }
    }
}

@Suite("pair configuration")
struct PairConfigurationTests {
    /// Found by the import-xml fuzz target: a domain name with a line break ended the header
    /// comment, and the rest of the name became TOML.
    @Test func aNameWithLineBreaksStaysInsideItsComment() throws {
        let xml = "<domain><name>web&#10;[failover]&#10;without_witness = true</name><memory>65536</memory><os><type>hvm</type></os></domain>"
        let plan = try LibvirtDomainImport.plan(xml: Array(xml.utf8))
        #expect(plan.isProtectable, "\(plan.blockers)")
        let text = PairConfiguration(plan: plan, options: ImportOptions(outDirectory: "/out")).text(for: .primary)
        let document = try TOMLDocument(parsing: text, source: "primary.toml")
        #expect(document.value("failover.without_witness") == nil, "\(text)")
        #expect(try document.string("vm.id") == "web-failover-without_witness-true")
    }
}
