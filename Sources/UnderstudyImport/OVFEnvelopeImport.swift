import Foundation

/// Maps an OVF envelope (DMTF DSP0243, the descriptor of an .ova or .ovf) to an `ImportPlan`:
/// pure, from the text alone. Disks keep their file reference (`href`) as their source; the
/// importer decides where that file is (an OVA member, or beside the .ovf).
///
/// The virtual hardware is read from the first VirtualSystem's items by their CIM ResourceType
/// (3 CPU, 4 memory, 17 disk, 10 and 11 NICs, ...); an item in a configuration other than the
/// default (DeploymentOptionSection) is skipped, and an item type it does not know blocks.
public enum OVFEnvelopeImport {
    public static func plan(xml: [UInt8], id: String? = nil) throws(MarkupError) -> ImportPlan {
        let envelope = try MarkupParser.parse(xml)
        guard envelope.localName == "Envelope" else { throw MarkupError(line: envelope.line, "the root element is <\(envelope.name)>, not an OVF <Envelope>") }
        var system = envelope.child("VirtualSystem")
        if system == nil, let collection = envelope.child("VirtualSystemCollection") {
            let systems = collection.children("VirtualSystem")
            system = systems.first
            if systems.count > 1 {
                var plan = ImportPlan(kind: .ovf, sourceName: collection.attribute("id") ?? "", id: "", memoryMiB: 0, vcpus: 1, machine: "pc")
                plan.block("VirtualSystemCollection", "\(systems.count) VMs in one appliance: Understudy protects one VM per pair")
                return plan
            }
        }
        guard let system else { throw MarkupError(line: envelope.line, "no VirtualSystem in the envelope") }
        let name = system.child("Name")?.trimmedText.nonEmpty ?? system.attribute("id") ?? ""
        var plan = ImportPlan(kind: .ovf, sourceName: name, id: "", memoryMiB: 0, vcpus: 1, machine: "pc")
        plan.assignID(name: name, override: id)
        if let os = system.child("OperatingSystemSection") {
            plan.takenOver.append("guest OS: \(os.child("Description")?.trimmedText.nonEmpty ?? os.attribute("osType") ?? os.attribute("id") ?? "unnamed")")
        }
        guard let hardware = system.child("VirtualHardwareSection") else {
            plan.block("VirtualHardwareSection", "missing: the appliance describes no hardware")
            return plan
        }
        let firmware = self.firmware(hardware, system: system)
        switch firmware {
        case "bios": plan.takenOver.append("BIOS firmware")
        case "efi":
            plan.firmware = .uefi
            plan.takenOver.append("UEFI firmware")
        default: plan.block("firmware \(firmware)", "unknown firmware: the VM model boots with SeaBIOS or OVMF (UEFI)")
        }
        plan.machine = plan.firmware == .uefi ? "q35" : "pc"
        plan.change("machine", plan.machine, because: "OVF names no machine: q35 for UEFI guests, pc (i440FX) for BIOS ones")
        let files = Dictionary(envelope.child("References")?.children("File").compactMap { file in file.attribute("id").map { ($0, file) } } ?? [],
                               uniquingKeysWith: { first, _ in first })
        let disks = Dictionary(envelope.child("DiskSection")?.children("Disk").compactMap { disk in disk.attribute("diskId").map { ($0, disk) } } ?? [],
                               uniquingKeysWith: { first, _ in first })
        let configuration = envelope.child("DeploymentOptionSection")?.children("Configuration").first { $0.attribute("default") == "true" }?.attribute("id")
        let items = hardware.children.filter { ["Item", "StorageItem", "EthernetPortItem"].contains($0.localName) }.filter { item in
            guard let only = item.attribute("configuration") else { return true }
            return configuration.map { only.split(separator: " ").contains(Substring($0)) } ?? false
        }
        let controllers = Dictionary(items.compactMap { item in field(item, "InstanceID").map { ($0, item) } }, uniquingKeysWith: { first, _ in first })
        var sawCPU = false
        var sawMemory = false
        for item in items {
            let type = Int(field(item, "ResourceType") ?? "") ?? -1
            let label = field(item, "ElementName") ?? field(item, "Caption") ?? "item \(field(item, "InstanceID") ?? "?")"
            switch type {
            case 3:
                sawCPU = true
                plan.assignVCPUs(Int(field(item, "VirtualQuantity") ?? "") ?? 0, subject: label)
            case 4:
                sawMemory = true
                let units = field(item, "AllocationUnits") ?? "byte * 2^20"
                guard let quantity = UInt64(field(item, "VirtualQuantity") ?? ""), let factor = unitFactor(units) else {
                    plan.block(label, "\"\(field(item, "VirtualQuantity") ?? "")\" \(units) is not an amount of memory")
                    continue
                }
                let (bytes, overflow) = quantity.multipliedReportingOverflow(by: factor)
                if overflow { plan.block(label, "too much memory") } else { plan.assignMemory(bytes: bytes, subject: label) }
            case 5, 6, 20, 23:
                break  // Controllers: QEMU adds what the model's devices need; a disk's bus is noted with the disk.
            case 10, 11:
                let model = field(item, "ResourceSubType") ?? "unnamed"
                let connection = field(item, "Connection").map { "OVF network \($0)" }
                let before = plan.nics.count
                plan.addNIC(mac: field(item, "Address")?.replacingOccurrences(of: "-", with: ":"), connection: connection, subject: label)
                guard plan.nics.count > before else { continue }
                if model.lowercased() != "virtio" {
                    plan.change("\(label) (\(model))", "virtio-net", because: "the VM model's NICs are virtio-net: the guest needs the virtio_net driver, and its interface name may change (match by MAC)")
                } else {
                    plan.takenOver.append("NIC \(plan.nics[before].mac) (virtio)")
                }
            case 17:
                disk(item, label: label, files: files, disks: disks, controllers: controllers, into: &plan)
            case 14, 15, 16:
                let kind = type == 14 ? "floppy drive" : "CD/DVD drive"
                if let resource = field(item, "HostResource")?.nonEmpty {
                    plan.block("\(label) (\(resource))", "the VM model has no \(kind): remove the medium from the appliance")
                } else {
                    plan.change(label, "left out", because: "it is empty, and the VM model has no \(kind)")
                }
            case 21:
                plan.change(label, "the agent's serial log (run_dir)", because: "the VM model has one serial port, written to a file on the host that runs the VM")
            case 1, 24, 35:
                plan.change("\(label)\(field(item, "ResourceSubType").map { " (\($0))" } ?? "")", "left out",
                            because: type == 1 ? "a hypervisor-specific device, not in the VM model" : "not needed: the protected VM has no display or sound")
            default:
                plan.block("\(label) (ResourceType \(type))", "unknown device: not in the VM model, so protecting the VM would remove it")
            }
        }
        if !sawCPU { plan.assignVCPUs(1, subject: "CPU") }
        if !sawMemory { plan.block("memory", "the appliance gives no memory size (ResourceType 4)") }
        return plan
    }

    private static func disk(_ item: MarkupElement, label: String, files: [String: MarkupElement], disks: [String: MarkupElement],
                             controllers: [String: MarkupElement], into plan: inout ImportPlan) {
        guard let resource = field(item, "HostResource")?.nonEmpty else {
            plan.change(label, "left out", because: "it names no disk image")
            return
        }
        let reference = resource.split(separator: "/").last.map(String.init) ?? resource
        let disk = resource.contains("/disk/") ? disks[reference] : nil
        guard let fileID = resource.contains("/file/") ? reference : disk?.attribute("fileRef") else {
            plan.block("\(label) (\(resource))", disk == nil ? "names no disk of the DiskSection" : "an empty disk with no file: create it on the hosts and add it by hand")
            return
        }
        guard let file = files[fileID], let href = file.attribute("href") else {
            plan.block("\(label) (\(resource))", "its file \(fileID) is not in References")
            return
        }
        guard !href.contains("://"), !href.hasPrefix("/"), !href.hasPrefix("-"), !href.split(separator: "/").contains("..") else {
            plan.block("\(label) (\(href))", "the file must sit in the appliance, under a relative name")
            return
        }
        if let compression = file.attribute("compression"), compression != "identity" {
            plan.block("\(label) (\(href))", "a \(compression)-compressed file: unpack it first")
            return
        }
        if file.attribute("chunkSize") != nil {
            plan.block("\(label) (\(href))", "a file split into chunks: join them first")
            return
        }
        let formatURI = disk?.attribute("format") ?? ""
        let format = formatURI.lowercased().contains("vmdk") ? "vmdk" : formatURI.lowercased().contains("qcow") ? "qcow2"
            : formatURI.lowercased().contains("raw") ? "raw" : formatURI.isEmpty && href.lowercased().hasSuffix(".vmdk") ? "vmdk" : ""
        guard !format.isEmpty else {
            plan.block("\(label) (\(href))", "the disk format \"\(formatURI)\" is not one qemu-img converts (VMDK, qcow2, raw)")
            return
        }
        var capacity: UInt64?
        if let text = disk?.attribute("capacity") {
            guard let value = UInt64(text), let factor = unitFactor(disk?.attribute("capacityAllocationUnits") ?? "byte"),
                  case let (bytes, false) = value.multipliedReportingOverflow(by: factor) else {
                plan.block("\(label) (\(href))", "the capacity \"\(text)\" \(disk?.attribute("capacityAllocationUnits") ?? "") is not a size")
                return
            }
            capacity = bytes
        }
        let before = plan.disks.count
        plan.addDisk(sourceName: disk?.attribute("diskId") ?? fileID, source: href, format: format, capacity: capacity, subject: label)
        guard plan.disks.count > before else { return }
        let controller = field(item, "Parent").flatMap { controllers[$0] }
        let bus = controller.map { (field($0, "ResourceSubType") ?? field($0, "ElementName") ?? "controller type \(field($0, "ResourceType") ?? "?")") }
        if let bus, bus.lowercased() != "virtio" {
            plan.change("\(label) (\(bus))", "virtio-blk \(plan.disks[before].target)",
                        because: "the VM model's disks are virtio-blk: the guest needs the virtio_blk driver, and it calls the disk \(plan.disks[before].target); mount by UUID or LABEL")
        } else {
            plan.takenOver.append("\(label): \(href) (\(format)) as \(plan.disks[before].target)")
        }
    }

    /// The firmware the appliance asks for: VMware's `<vmw:Config vmw:key="firmware">`, VirtualBox's
    /// `<Firmware type="EFI">`; BIOS when it says nothing.
    private static func firmware(_ hardware: MarkupElement, system: MarkupElement) -> String {
        if let config = hardware.children("Config").first(where: { $0.attribute("key") == "firmware" }) {
            return config.attribute("value")?.lowercased() ?? ""
        }
        if let machine = system.child("Machine"), let firmware = descendant(machine, "Firmware") {
            return firmware.attribute("type")?.lowercased() ?? ""
        }
        return "bios"
    }

    /// The first element named `localName` under `element`, depth first (VirtualBox nests its
    /// settings in vbox:Machine/Hardware).
    private static func descendant(_ element: MarkupElement, _ localName: String) -> MarkupElement? {
        for child in element.children {
            if child.localName == localName { return child }
            if let found = descendant(child, localName) { return found }
        }
        return nil
    }

    /// An item's CIM property (rasd:, sasd: or epasd:) by its local name.
    private static func field(_ item: MarkupElement, _ name: String) -> String? { item.child(name)?.trimmedText }

    /// Bytes per unit of a programmatic unit (DSP0004): "byte", "byte * 2^20", "byte * 1024", or
    /// the older names KiloBytes, MegaBytes, GigaBytes.
    static func unitFactor(_ units: String) -> UInt64? {
        let compact = units.replacingOccurrences(of: " ", with: "").lowercased()
        switch compact {
        case "byte", "bytes": return 1
        case "kilobytes", "kb": return 1 << 10
        case "megabytes", "mb": return 1 << 20
        case "gigabytes", "gb": return 1 << 30
        default: break
        }
        guard compact.hasPrefix("byte*") else { return nil }
        let factor = compact.dropFirst(5)
        if factor.hasPrefix("2^"), let power = Int(factor.dropFirst(2)), (0...50).contains(power) { return 1 << UInt64(power) }
        return UInt64(factor).flatMap { $0 > 0 ? $0 : nil }
    }
}
