import Testing
import UnderstudyAgent
@testable import UnderstudyImport

@Suite("OVF envelope import")
struct OVFEnvelopeImportTests {
    @Test func readsCPUsMemoryDisksNICsAndFirmwareFromTheHardwareSection() throws {
        let plan = try OVFEnvelopeImport.plan(xml: Fixtures.bytes("appliance.ovf"))
        #expect(plan.isProtectable, "\(plan.blockers)")
        #expect(plan.kind == .ovf && plan.sourceName == "monitoring appliance" && plan.id == "monitoring-appliance")
        #expect(plan.vcpus == 2 && plan.memoryMiB == 1024 && plan.firmware == .uefi && plan.machine == "q35")
        #expect(plan.disks == [ImportedDisk(target: "vda", sourceName: "vmdisk1", source: "appliance-disk1.vmdk", format: "vmdk", capacity: 32 << 20)])
        #expect(plan.nics.count == 1 && plan.nics[0].connection == "OVF network VM Network")
        #expect(plan.nics[0].mac == AgentConfiguration.defaultMAC(for: "monitoring-appliance"))
        let changes = Dictionary(plan.changes.map { ($0.subject, $0.change) }, uniquingKeysWith: { first, _ in first })
        #expect(changes["Hard disk 1 (VirtualSCSI)"] == "virtio-blk vda")
        #expect(changes["Network adapter 1 (VmxNet3)"] == "virtio-net")
        #expect(changes["CD/DVD drive 1"] == "left out" && changes["Video card"] == "left out")
    }

    @Test func aVMDKBlocksWithoutConvertDisks() throws {
        let plan = try OVFEnvelopeImport.plan(xml: Fixtures.bytes("appliance.ovf"))
        let facts = ImportFacts(images: ["appliance-disk1.vmdk": .init(virtualSize: 32 << 20)], existingPaths: ["/usr/share/OVMF/OVMF_VARS_4M.fd"])
        let refused = plan.resolved(facts: facts, options: ImportOptions(outDirectory: "/out"))
        #expect(refused.blockers.map(\.subject) == ["disk vda (vmdisk1: appliance-disk1.vmdk)"])
        #expect(refused.blockers[0].reason.contains("vmdk") && refused.blockers[0].reason.contains("--convert-disks"))
    }

    @Test func unsupportedItemsAndFilesBlock() throws {
        let envelope = """
            <Envelope xmlns:ovf="urn:ovf" xmlns:rasd="urn:rasd">
              <References><File ovf:id="f1" ovf:href="../etc/shadow"/><File ovf:id="f2" ovf:href="d2.vmdk.gz" ovf:compression="gzip"/>
                <File ovf:id="f3" ovf:href="--to-command=sh"/></References>
              <DiskSection><Disk ovf:diskId="d1" ovf:fileRef="f1" ovf:capacity="1" ovf:capacityAllocationUnits="byte * 2^30"/>
                <Disk ovf:diskId="d2" ovf:fileRef="f2" ovf:capacity="1" ovf:capacityAllocationUnits="byte * 2^30"/>
                <Disk ovf:diskId="d3" ovf:fileRef="f3" ovf:capacity="1" ovf:capacityAllocationUnits="byte * 2^30" ovf:format="vmdk"/></DiskSection>
              <VirtualSystem ovf:id="vm">
                <VirtualHardwareSection>
                  <vmw:Config xmlns:vmw="urn:vmw" vmw:key="firmware" vmw:value="csm"/>
                  <Item><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>512</rasd:VirtualQuantity><rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits></Item>
                  <Item><rasd:ElementName>Hard disk 1</rasd:ElementName><rasd:ResourceType>17</rasd:ResourceType><rasd:HostResource>ovf:/disk/d1</rasd:HostResource></Item>
                  <Item><rasd:ElementName>Hard disk 2</rasd:ElementName><rasd:ResourceType>17</rasd:ResourceType><rasd:HostResource>ovf:/disk/d2</rasd:HostResource></Item>
                  <Item><rasd:ElementName>Hard disk 3</rasd:ElementName><rasd:ResourceType>17</rasd:ResourceType><rasd:HostResource>ovf:/disk/d3</rasd:HostResource></Item>
                  <Item><rasd:ElementName>CD 1</rasd:ElementName><rasd:ResourceType>15</rasd:ResourceType><rasd:HostResource>ovf:/file/iso</rasd:HostResource></Item>
                  <Item><rasd:ElementName>Parallel 1</rasd:ElementName><rasd:ResourceType>22</rasd:ResourceType></Item>
                  <Item ovf:configuration="large"><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>16</rasd:VirtualQuantity></Item>
                </VirtualHardwareSection>
              </VirtualSystem>
            </Envelope>
            """
        let plan = try OVFEnvelopeImport.plan(xml: Array(envelope.utf8))
        #expect(plan.blockers.map(\.subject) == ["firmware csm", "Hard disk 1 (../etc/shadow)", "Hard disk 2 (d2.vmdk.gz)",
                                                 "Hard disk 3 (--to-command=sh)", "CD 1 (ovf:/file/iso)",
                                                 "Parallel 1 (ResourceType 22)"])
        #expect(plan.memoryMiB == 512 && plan.vcpus == 1, "the item of a configuration other than the default is skipped")
        #expect(plan.blockers.first { $0.subject.hasPrefix("Hard disk 3") }?.reason.contains("relative name") == true,
                "a name tar would read as an option (--to-command) never reaches tar")
    }

    @Test func virtualBoxSaysEFIInItsMachineSection() throws {
        let envelope = """
            <Envelope xmlns:rasd="urn:rasd" xmlns:vbox="http://www.virtualbox.org/ovf/machine">
              <VirtualSystem id="vbox-vm">
                <VirtualHardwareSection>
                  <Item><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>2048</rasd:VirtualQuantity><rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits></Item>
                </VirtualHardwareSection>
                <vbox:Machine><Hardware><Firmware type="EFI"/></Hardware></vbox:Machine>
              </VirtualSystem>
            </Envelope>
            """
        let plan = try OVFEnvelopeImport.plan(xml: Array(envelope.utf8))
        #expect(plan.isProtectable && plan.firmware == .uefi && plan.machine == "q35" && plan.memoryMiB == 2048)
    }

    @Test func severalVirtualSystemsBlock() throws {
        let plan = try OVFEnvelopeImport.plan(xml: Array("<Envelope><VirtualSystemCollection id='c'><VirtualSystem id='a'/><VirtualSystem id='b'/></VirtualSystemCollection></Envelope>".utf8))
        #expect(plan.blockers.map(\.subject) == ["VirtualSystemCollection"])
    }

    @Test func allocationUnits() {
        #expect(OVFEnvelopeImport.unitFactor("byte * 2^20") == 1 << 20)
        #expect(OVFEnvelopeImport.unitFactor("byte*1024") == 1024)
        #expect(OVFEnvelopeImport.unitFactor("GigaBytes") == 1 << 30)
        #expect(OVFEnvelopeImport.unitFactor("hertz * 10^6") == nil)
        #expect(OVFEnvelopeImport.unitFactor("byte * 2^99") == nil)
    }
}
