import UnderstudyQEMU

/// Maps a libvirt domain (the XML of `virsh dumpxml`) to an `ImportPlan`: pure, from the text alone.
///
/// Every device element is either taken over, changed (a NIC or disk bus becomes virtio, a
/// device the VM does not need is left out) or blocks protection; an element it does not know
/// blocks too, so that nothing the guest may rely on disappears silently.
public enum LibvirtDomainImport {
    /// The plan for the domain in `xml`; `id` overrides the id derived from its name.
    public static func plan(xml: [UInt8], id: String? = nil) throws(MarkupError) -> ImportPlan {
        let domain = try MarkupParser.parse(xml)
        guard domain.localName == "domain" else { throw MarkupError(line: domain.line, "the root element is <\(domain.name)>, not a libvirt <domain>") }
        let name = domain.child("name")?.trimmedText ?? ""
        var plan = ImportPlan(kind: .libvirt, sourceName: name, id: "", memoryMiB: 0, vcpus: 1, machine: "pc")
        plan.assignID(name: name, override: id)
        if let type = domain.attribute("type"), !["kvm", "qemu"].contains(type) {
            plan.block("domain type \(type)", "only QEMU/KVM domains are imported")
        }
        memoryAndCPUs(domain, into: &plan)
        operatingSystem(domain, into: &plan)
        for element in domain.children where ignoredTopLevel[String(element.localName)] != nil {
            plan.change("<\(element.localName)>", "left out", because: ignoredTopLevel[String(element.localName)]!)
        }
        if let clock = domain.child("clock"), let offset = clock.attribute("offset"), offset != "utc" {
            plan.change("clock offset \(offset)", "the guest's clock is UTC", because: "the VM model starts QEMU's clock in UTC (a Windows guest that expects local time shows UTC)")
        }
        if domain.child("launchSecurity") != nil {
            plan.block("<launchSecurity>", "encrypted guest memory (SEV) cannot be read by the agent to checkpoint it")
        }
        for device in domain.child("devices")?.children ?? [] { self.device(device, into: &plan) }
        return plan
    }

    // MARK: - Domain

    /// Top-level elements left out, each with the reason.
    private static let ignoredTopLevel: [String: String] = [
        "cpu": "the VM runs with QEMU's default CPU model, which both hosts offer (a host CPU model could differ between them)",
        "memoryBacking": "guest memory is a shared file the agent maps (hugepages and locking settings do not apply)",
        "cputune": "tuning is the hosts' business; set it for the agent's QEMU if needed",
        "numatune": "the VM model has one NUMA node",
        "memtune": "tuning is the hosts' business",
        "blkiotune": "disks are served by the agent over NBD",
        "iothreads": "disks are served by the agent over NBD",
        "sysinfo": "SMBIOS strings are QEMU's defaults (software licensed to them may notice)",
        "pm": "suspend to RAM or disk is not in the VM model",
    ]

    private static let implicitControllers: Set<String> = ["virtio-serial", "pci", "usb", "sata", "ide", "scsi", "fdc", "ccid"]

    private static func memoryAndCPUs(_ domain: MarkupElement, into plan: inout ImportPlan) {
        if let memory = domain.child("memory") {
            if let bytes = bytes(memory.trimmedText, unit: memory.attribute("unit") ?? "KiB") {
                plan.assignMemory(bytes: bytes, subject: "<memory>")
                if let current = domain.child("currentMemory"), let now = self.bytes(current.trimmedText, unit: current.attribute("unit") ?? "KiB"), now < bytes {
                    plan.change("<currentMemory>", "the guest has all \(plan.memoryMiB) MiB", because: "there is no balloon: Understudy replicates the whole of guest memory")
                }
            } else {
                plan.block("<memory>", "\"\(memory.trimmedText)\" \(memory.attribute("unit") ?? "KiB") is not an amount of memory")
            }
        } else {
            plan.block("<memory>", "missing")
        }
        guard let vcpu = domain.child("vcpu"), let maximum = Int(vcpu.trimmedText) else {
            plan.assignVCPUs(1, subject: "<vcpu>")
            return
        }
        if let current = vcpu.attribute("current").flatMap(Int.init), current < maximum {
            plan.assignVCPUs(current, subject: "<vcpu current>")
            plan.change("<vcpu>", "\(current) vCPUs, no hot-plug up to \(maximum)", because: "the VM model has a fixed number of vCPUs")
        } else {
            plan.assignVCPUs(maximum, subject: "<vcpu>")
        }
    }

    private static func operatingSystem(_ domain: MarkupElement, into plan: inout ImportPlan) {
        guard let os = domain.child("os") else {
            plan.block("<os>", "missing")
            return
        }
        let type = os.child("type")
        if let type, type.trimmedText != "hvm" { plan.block("<os><type>\(type.trimmedText)", "only full virtualisation (hvm) is imported") }
        if let arch = type?.attribute("arch"), !["x86_64", "i686"].contains(arch) { plan.block("arch \(arch)", "Understudy runs x86 guests (qemu-system-x86_64)") }
        let machine = type?.attribute("machine") ?? "pc"
        if VMDescription.isSupportedMachine(machine) {
            plan.machine = machine
            plan.takenOver.append("machine \(machine)")
        } else {
            plan.block("machine \(machine)", "the VM model has the pc and q35 machines (and their versioned pc-i440fx-X.Y, pc-q35-X.Y)")
        }
        let loader = os.child("loader")
        let secureBoot = os.child("firmware")?.children("feature").contains { $0.attribute("name") == "secure-boot" && $0.attribute("enabled") == "yes" } == true
            || loader?.attribute("secure") == "yes"
        switch (os.attribute("firmware"), loader?.attribute("type")) {
        case ("efi", _), (nil, "pflash"):
            plan.firmware = .uefi
            plan.uefiVarsSource = os.child("nvram")?.trimmedText.nonEmpty
            plan.takenOver.append("UEFI firmware" + (plan.uefiVarsSource.map { ", variable store \($0)" } ?? ""))
            if let path = loader?.trimmedText.nonEmpty, !path.hasPrefix("/usr/share/OVMF/") && !path.hasPrefix("/usr/share/edk2/") {
                plan.change("<loader>\(path)", "Debian's OVMF", because: "the VM model boots UEFI guests with OVMF (the ovmf package)")
            }
            if secureBoot {
                plan.change("Secure Boot", "not enforced", because: "the VM model boots OVMF without Secure Boot; the keys stay in the variable store")
            }
        case (nil, nil):
            plan.takenOver.append("BIOS firmware")
        case (let firmware, let type):
            plan.block("firmware \(firmware ?? type ?? "?")", "unknown firmware: the VM model boots with SeaBIOS or OVMF (UEFI)")
        }
        for (key, element) in [("kernel", os.child("kernel")), ("initrd", os.child("initrd")), ("cmdline", os.child("cmdline"))] {
            guard let text = element?.trimmedText.nonEmpty else { continue }
            switch key {
            case "kernel": plan.kernel = text
            case "initrd": plan.initrd = text
            default: plan.commandLine = text
            }
            plan.takenOver.append("direct kernel boot: \(key) \(text)")
        }
        if let first = os.child("boot")?.attribute("dev"), first != "hd", plan.kernel == nil {
            plan.change("<boot dev='\(first)'>", "boots from the first disk", because: "the VM model boots from its first disk (or a kernel)")
        }
    }

    // MARK: - Devices

    private static func device(_ device: MarkupElement, into plan: inout ImportPlan) {
        let kind = String(device.localName)
        switch kind {
        case "disk": disk(device, into: &plan)
        case "interface": interface(device, into: &plan)
        case "rng":
            guard device.attribute("model") == "virtio" else {
                plan.block("rng \(device.attribute("model") ?? "?")", "the VM model's random number generator is virtio-rng")
                return
            }
            plan.rng = true
            plan.takenOver.append("virtio-rng")
            if let backend = device.child("backend")?.attribute("model"), backend != "random" {
                plan.change("rng backend \(backend)", "the host's /dev/urandom", because: "a socket to an entropy daemon is host-local")
            }
        case "emulator":
            plan.change("<emulator>\(device.trimmedText)", "the agent's QEMU (vm.qemu)", because: "each host runs its own QEMU")
        case "graphics", "video", "sound", "audio", "input":
            let what = device.attribute("type") ?? device.child("model")?.attribute("type") ?? device.attribute("model") ?? ""
            plan.change("\(kind)\(what.isEmpty ? "" : " \(what)")", "left out", because: "not needed: the protected VM has no display, keyboard or sound; use the serial console or the network")
        case "controller":
            // QEMU adds the controllers the model's devices need.
            guard !implicitControllers.contains(device.attribute("type") ?? "") else { return }
            plan.block("controller \(device.attribute("type") ?? "?")", "not in the VM model")
        case "serial", "console":
            plan.change("\(kind) \(device.attribute("type") ?? "")", "the agent's serial log (run_dir)", because: "the VM model has one serial port, written to a file on the host that runs the VM")
        case "channel": channel(device, into: &plan)
        case "memballoon":
            if device.attribute("model") != "none" {
                plan.change("memballoon \(device.attribute("model") ?? "")", "left out", because: "there is no balloon: Understudy replicates the whole of guest memory")
            }
        case "watchdog", "panic", "iommu", "hub":
            plan.change("\(kind) \(device.attribute("model") ?? "")", "left out", because: "not in the VM model; the guest runs without it")
        case "hostdev":
            let address = device.child("source")?.child("address").map { element in
                element.attributes.map { "\($0.name)=\($0.value)" }.joined(separator: " ")
            } ?? ""
            plan.block("hostdev \(device.attribute("type") ?? "")\(address.isEmpty ? "" : " (\(address))")",
                       "host device passthrough: the device's state is in the hardware, not in QEMU, so it can be neither checkpointed nor moved to the other host")
        case "redirdev" where device.attribute("type") == "spicevmc":
            plan.change("redirdev \(device.attribute("bus") ?? "usb") spicevmc", "left out", because: "it redirects USB devices of a SPICE client, and the protected VM has no SPICE graphics")
        case "redirdev":
            plan.block("redirdev \(device.attribute("bus") ?? "usb")", "USB redirection connects the guest to a client's device; it cannot follow the VM to the other host")
        case "filesystem":
            plan.block("filesystem \(device.child("target")?.attribute("dir") ?? "")",
                       "a host directory shared with the guest (\(device.child("driver")?.attribute("type") ?? "9p")): it is on one host only and outside the checkpoint")
        case "shmem":
            plan.block("shmem \(device.attribute("name") ?? "")", "memory shared with the host or other VMs is outside the checkpoint")
        case "vsock":
            plan.block("vsock", "a host-local socket: its connections end at this host")
        case "tpm":
            plan.block("tpm \(device.attribute("model") ?? "")", "the TPM's state lives in swtpm (or the host's TPM), outside QEMU: it cannot be checkpointed")
        case "smartcard", "parallel", "crypto", "nvram", "lease":
            plan.block(kind, "not in the VM model, and its state or backend is on this host only")
        default:
            plan.block("<\(kind)>", "unknown device: not in the VM model, so protecting the VM would remove it")
        }
    }

    private static func disk(_ disk: MarkupElement, into plan: inout ImportPlan) {
        let device = disk.attribute("device") ?? "disk"
        let type = disk.attribute("type") ?? "file"
        let target = disk.child("target")?.attribute("dev") ?? "?"
        let sourceElement = disk.child("source")
        let source = sourceElement?.attribute("file") ?? sourceElement?.attribute("dev")
        let subject = "disk \(target)"
        switch device {
        case "cdrom":
            guard let source else {
                plan.change("cdrom \(target)", "left out", because: "it is empty, and the VM model has no CD-ROM")
                return
            }
            if disk.child("readonly") != nil {
                plan.block("cdrom \(target) (\(source))", "the VM model has no CD-ROM: eject it (virsh change-media \(plan.sourceName) \(target) --eject) and import again")
            } else {
                plan.block("cdrom \(target) (\(source))", "a read-write CD-ROM is not replicated, and the VM model has no CD-ROM: eject it and import again")
            }
            return
        case "floppy":
            guard let source else {
                plan.change("floppy \(target)", "left out", because: "it is empty, and the VM model has no floppy drive")
                return
            }
            plan.block("floppy \(target) (\(source))", "the VM model has no floppy drive")
            return
        case "disk": break
        default:
            plan.block("\(device) \(target)", "SCSI passthrough (device='\(device)') gives the guest a host device: not replicable")
            return
        }
        if let protocolName = sourceElement?.attribute("protocol") ?? (type == "network" ? "network" : nil) {
            plan.block("\(subject) (\(protocolName) \(sourceElement?.attribute("name") ?? ""))",
                       "a network disk: Understudy serves each disk from a raw image on the host and replicates it; copy it into a raw file first")
            return
        }
        guard type == "file" || type == "block", let source else {
            plan.block(subject, type == "volume" ? "a storage pool volume: give its file (virsh vol-path) in the domain file and import again"
                                                 : "a disk of type '\(type)' with no file: the VM model's disks are raw image files")
            return
        }
        if disk.child("shareable") != nil {
            plan.block("\(subject) (\(source))", "a shared disk: another VM writes it too, and its writes could not be replicated with this VM's checkpoints")
            return
        }
        if disk.child("readonly") != nil {
            plan.block("\(subject) (\(source))", "a read-only disk: the VM model serves every disk writable, which could change an image other VMs read")
            return
        }
        if disk.child("transient") != nil {
            plan.block("\(subject) (\(source))", "a transient disk (changes thrown away at shutdown) is not in the VM model")
            return
        }
        let format = disk.child("driver")?.attribute("type") ?? "raw"
        let before = plan.disks.count
        plan.addDisk(sourceName: target, source: source, format: format, capacity: nil, subject: subject)
        guard plan.disks.count > before else { return }
        // Its name under Understudy (vda, vdb, ...) is in the report's disk list: a boot disk
        // further down the file may still move to the front.
        let bus = disk.child("target")?.attribute("bus") ?? "virtio"
        if bus != "virtio" {
            plan.change("\(subject) (\(bus))", "virtio-blk",
                        because: "the VM model's disks are virtio-blk: the guest needs the virtio_blk driver, and it calls the disk /dev/vdX in the disk list's order; mount by UUID or LABEL")
        } else {
            plan.takenOver.append("disk \(target): \(source) (\(format))")
        }
        if disk.child("boot")?.attribute("order") == "1", before != 0 {
            plan.disks.insert(plan.disks.remove(at: before), at: 0)
            for index in plan.disks.indices { plan.disks[index].target = ImportPlan.virtioName(index) }
            plan.change(subject, "the first disk", because: "it is the domain's boot disk, and the VM model boots from the first")
        }
    }

    private static func interface(_ interface: MarkupElement, into plan: inout ImportPlan) {
        let type = interface.attribute("type") ?? "?"
        let mac = interface.child("mac")?.attribute("address")
        let subject = "interface \(mac ?? type)"
        let source = interface.child("source")
        let connection: String?
        switch type {
        case "bridge": connection = source?.attribute("bridge").map { "bridge \($0)" }
        case "network":
            // A running domain's file also names the network's bridge, where the TAP can go.
            connection = source?.attribute("network").map { name in "libvirt network \(name)" + (source?.attribute("bridge").map { ", bridge \($0)" } ?? "") }
        case "direct": connection = source?.attribute("dev").map { "macvtap on \($0)" }
        case "ethernet": connection = interface.child("target")?.attribute("dev").map { "tap \($0)" }
        case "user": connection = "user-mode networking (QEMU's NAT)"
        default:
            let reason = type == "vhostuser" ? "a vhost-user NIC is a host-local socket to a switch process: its state is outside QEMU"
                : type == "hostdev" ? "an SR-IOV passthrough NIC: its state is in the hardware, not in QEMU"
                : "a '\(type)' network backend is not in the VM model (NICs go through the agent's output gate to a TAP)"
            plan.block(subject, reason)
            return
        }
        let before = plan.nics.count
        plan.addNIC(mac: mac, connection: connection, subject: subject)
        guard plan.nics.count > before else { return }
        let nic = plan.nics[before]
        let model = interface.child("model")?.attribute("type") ?? "rtl8139"
        if model != "virtio" {
            plan.change("\(subject) (\(model))", "virtio-net", because: "the VM model's NICs are virtio-net: the guest needs the virtio_net driver, and its interface name may change (match by MAC)")
        }
        if type != "bridge" {
            plan.change("\(subject) (\(connection ?? type))", "TAP \(nic.tap)",
                        because: "each NIC goes through the agent's output gate to a TAP; connect it on both hosts to the network the VM was on")
        } else {
            plan.takenOver.append("NIC \(nic.mac) on \(connection ?? type), through TAP \(nic.tap)")
        }
        if let filter = interface.child("filterref")?.attribute("filter") {
            plan.change("\(subject) nwfilter \(filter)", "not applied", because: "libvirt's filters are not carried over: write the rules as [[network.rules]] (the gate's policy)")
        }
        if interface.child("bandwidth") != nil || interface.child("vlan") != nil {
            plan.change("\(subject) bandwidth/vlan", "left out", because: "set them on the host's bridge or the TAP")
        }
    }

    private static func channel(_ channel: MarkupElement, into plan: inout ImportPlan) {
        let type = channel.attribute("type") ?? "?"
        let name = channel.child("target")?.attribute("name") ?? ""
        if type == "spicevmc" {
            plan.change("channel spicevmc", "left out", because: "it serves SPICE graphics, which the protected VM has not")
        } else if name == "org.qemu.guest_agent.0" {
            // Nothing in the guest depends on the agent's port: the guest agent waits for it.
            plan.change("channel \(name)", "left out", because: "the guest agent's socket is host-local; the guest runs on without it (qemu-guest-agent idles)")
        } else {
            plan.block("channel \(type) \(name)", "a host-local channel: a program on this host talks to the guest through it, and the connection cannot follow the VM")
        }
    }

    /// libvirt's memory units (https://libvirt.org/formatdomain.html#memory-allocation).
    static func bytes(_ text: String, unit: String) -> UInt64? {
        guard let value = UInt64(text) else { return nil }
        let factor: UInt64
        switch unit {
        case "b", "bytes": factor = 1
        case "KB": factor = 1000
        case "k", "KiB": factor = 1 << 10
        case "MB": factor = 1_000_000
        case "M", "MiB": factor = 1 << 20
        case "GB": factor = 1_000_000_000
        case "G", "GiB": factor = 1 << 30
        case "TB": factor = 1_000_000_000_000
        case "T", "TiB": factor = 1 << 40
        default: return nil
        }
        let (product, overflow) = value.multipliedReportingOverflow(by: factor)
        return overflow ? nil : product
    }
}
