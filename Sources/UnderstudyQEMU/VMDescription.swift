import Foundation
import UnderstudyProtocol

/// What to run: the VM as the operator configured it. Both nodes of a pair describe the same VM.
public struct VMDescription: Sendable, Equatable {
    public enum Accelerator: String, Sendable, CaseIterable {
        /// KVM where the CPU shows hardware virtualisation (vmx/svm), TCG otherwise.
        case auto, kvm, tcg
    }

    /// How the guest's virtio devices (disk, NIC) attach to PCI.
    public enum VirtioTransport: String, Sendable, CaseIterable {
        /// Legacy virtio-pci (0.9.5): the device state saved at every checkpoint is about 7 times
        /// smaller (QEMU's modern transport saves 1,024 queue slots per device) and saves in a
        /// third of the time, which shortens every pause. Linux, BSDs and Windows drivers support it.
        case legacy
        /// Virtio 1.0 (modern) only, for guests without legacy drivers.
        case modern

        /// The -device properties that select the transport.
        public var deviceOptions: String {
            switch self {
            case .legacy: "disable-modern=on,disable-legacy=off"
            case .modern: "disable-modern=off,disable-legacy=on"
            }
        }
    }

    /// What the guest boots with.
    public enum Firmware: Sendable, Equatable {
        /// SeaBIOS, QEMU's default: boots the kernel given, or the first disk.
        case bios
        /// OVMF: `code` (read-only, Debian's `ovmf`) and this VM's own copy of the variable store,
        /// `variables`, which is replicated with the disks (the last image of the `DiskSet`), so
        /// a failover keeps the boot entries and every other variable the guest set.
        case uefi(code: String, variables: String)
    }

    /// Debian's OVMF build for 4 MiB flash (package `ovmf`).
    public static let defaultUEFICode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
    /// The variable store template that goes with it: copy it for each VM.
    public static let uefiVariablesTemplate = "/usr/share/OVMF/OVMF_VARS_4M.fd"
    /// The variable store's size that goes with an OVMF code image of `codeSize` bytes, for the
    /// builds Debian ships (4 MiB and 2 MiB flash); nil for another build.
    public static func uefiVariablesSize(forCodeOfSize codeSize: UInt64) -> UInt64? {
        [3_653_632: 540_672, 1_966_080: 131_072][codeSize]
    }

    /// The block nodes of the firmware's two flash chips.
    public static let uefiCodeNodeName = "uefi-code"
    public static let uefiVariablesNodeName = "uefi-vars"

    public var id: String
    public var memoryBytes: UInt64
    public var vcpus: Int
    public var machine: String
    public var accelerator: Accelerator
    /// Direct kernel boot (kernel + initrd + command line) ...
    public var kernel: String?
    public var initrd: String?
    public var commandLine: String
    /// ... or the raw disk images, in the guest's order (the first is the one to boot from); up to
    /// `VMIdentity.maxDiskCount`.
    public var diskImages: [String]
    public var firmware: Firmware = .bios
    /// A virtio-rng device, fed from the host's /dev/urandom (its state is part of every checkpoint).
    public var randomNumberGenerator = false
    public var virtio: VirtioTransport = .legacy
    /// SCHED_FIFO priority of the agent's checkpoint thread and QEMU's main thread while a
    /// checkpoint holds the guest paused (see `RealtimeBoost`); 0 leaves their scheduling alone.
    public var pausePriority: Int32 = 10
    /// Bytes of each replicated image (`replicatedImages`' sizes, in order). Set by whoever opened
    /// the images; part of the identity both agents must agree on.
    public var diskSizes: [UInt64] = []
    /// Where QEMU's sockets, serial log and (on tmpfs) guest RAM live for this VM.
    public var runDirectory: String
    /// The qemu-system-x86_64 to run.
    public var qemuBinary: String

    public init(id: String, memoryBytes: UInt64, vcpus: Int = 1, machine: String = "pc", accelerator: Accelerator = .auto,
                kernel: String? = nil, initrd: String? = nil, commandLine: String = "console=ttyS0", diskImages: [String] = [],
                runDirectory: String, qemuBinary: String = "qemu-system-x86_64") {
        self.id = id
        self.memoryBytes = memoryBytes
        self.vcpus = vcpus
        self.machine = machine
        self.accelerator = accelerator
        self.kernel = kernel
        self.initrd = initrd
        self.commandLine = commandLine
        self.diskImages = diskImages
        self.runDirectory = runDirectory
        self.qemuBinary = qemuBinary
    }

    /// What is replicated as the `DiskSet`: the guest's disks, then (UEFI) the variable store.
    public var replicatedImages: [String] {
        guard case .uefi(_, let variables) = firmware else { return diskImages }
        return diskImages + [variables]
    }

    /// The -machine option: the machine, its RAM backend and (UEFI) its flash chips.
    public var machineOption: String {
        let flash = if case .uefi = firmware { ",pflash0=\(Self.uefiCodeNodeName),pflash1=\(Self.uefiVariablesNodeName)" } else { "" }
        return "\(machine),memory-backend=ram" + flash
    }

    /// Devices of the VM itself, beyond its disks and NICs: the firmware's code flash and the
    /// random number generator. The same on every QEMU of the VM (device state loads only into
    /// matching devices).
    public var platformArguments: [String] {
        var arguments: [String] = []
        if case .uefi(let code, _) = firmware {
            arguments += ["-blockdev", "driver=file,filename=\(code.replacingOccurrences(of: ",", with: ",,")),node-name=\(Self.uefiCodeNodeName),read-only=on"]
        }
        if randomNumberGenerator {
            arguments += ["-object", "rng-random,id=rng0,filename=/dev/urandom",
                          "-device", "virtio-rng-pci,rng=rng0" + (virtio.deviceOptions.isEmpty ? "" : ",\(virtio.deviceOptions)")]
        }
        return arguments
    }

    /// What both agents of a pair must agree on.
    public var identity: VMIdentity { VMIdentity(id: id, memorySize: memoryBytes, diskSizes: diskSizes) }

    public var qmpSocket: String { "\(runDirectory)/qmp.sock" }
    public var preloadSocket: String { "\(runDirectory)/preload.sock" }
    public var serialLog: String { "\(runDirectory)/serial.log" }
    public var qemuLog: String { "\(runDirectory)/qemu.log" }
    /// Owner-only (see `PrivateDirectory`), on tmpfs: the files QEMU opens by name, guest RAM
    /// and the device state. Named after the run directory too, so a primary and a backup of one
    /// VM on one host never share it.
    public var privateDirectory: String {
        let tag = runDirectory.utf8.reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
        return "/dev/shm/understudy-\(id)-\(String(tag, radix: 16))"
    }
    /// In `privateDirectory`: written and read back inside every checkpoint pause.
    public var deviceStateFile: String { "\(privateDirectory)/\(Self.deviceStateFileName)" }
    static let deviceStateFileName = "device-state"
    public var pidFile: String { "\(runDirectory)/qemu.pid" }
    /// Guest RAM of the primary, in `privateDirectory`: shared with the agent.
    public var ramFile: String { "\(privateDirectory)/\(Self.ramFileName)" }
    static let ramFileName = "ram"

    /// What a VM id may be, as a sentence for error messages.
    public static let idRule = "1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit"

    /// Whether `id` follows `idRule`. The id names files (in /dev/shm, the run and state
    /// directories), QEMU options (a comma would start another one) and the witness key.
    public static func isValidID(_ id: String) -> Bool {
        let alphanumeric = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".utf8)
        let bytes = Array(id.utf8)
        guard (1...63).contains(bytes.count), alphanumeric.contains(bytes[0]) else { return false }
        return bytes.allSatisfy { alphanumeric.contains($0) || Set("._-".utf8).contains($0) }
    }

    /// The machines whose device state this build saves and restores: i440FX (`pc`) and Q35.
    public static func isSupportedMachine(_ machine: String) -> Bool {
        ["pc", "q35"].contains(machine) || ["pc-i440fx-", "pc-q35-"].contains { machine.hasPrefix($0) && machine.count > $0.count }
    }

    /// Checks what can be checked before starting anything.
    public func validate() throws(QEMUError) {
        guard Self.isValidID(id) else { throw .invalidConfiguration("the VM id \(id.debugDescription) must be \(Self.idRule)") }
        guard memoryBytes >= 16 << 20, memoryBytes % (2 << 20) == 0 else {
            throw .invalidConfiguration("memory must be at least 16 MiB and a multiple of 2 MiB, got \(memoryBytes) bytes")
        }
        guard vcpus >= 1 && vcpus <= 64 else { throw .invalidConfiguration("vcpus must be 1 to 64, got \(vcpus)") }
        guard Self.isSupportedMachine(machine) else {
            throw .invalidConfiguration("machine \(machine.debugDescription) is not supported: use \"pc\" or \"q35\" (or a versioned pc-i440fx-X.Y / pc-q35-X.Y)")
        }
        guard kernel != nil || !diskImages.isEmpty else { throw .invalidConfiguration("set either kernel (and initrd) or disk_image") }
        guard replicatedImages.count <= VMIdentity.maxDiskCount else {
            throw .invalidConfiguration("\(replicatedImages.count) replicated images (disks and a UEFI variable store); at most \(VMIdentity.maxDiskCount) are supported")
        }
        guard Set(diskImages).count == diskImages.count else { throw .invalidConfiguration("a disk image is listed twice") }
        if case .uefi(let code, let variables) = firmware {
            guard !diskImages.contains(variables) else { throw .invalidConfiguration("the UEFI variable store \(variables) is also listed as a disk") }
            guard FileManager.default.isReadableFile(atPath: code) else {
                throw .missing("cannot read the UEFI firmware \(code); install Debian's ovmf (Deploy/install.sh does)")
            }
        }
        for file in [kernel, initrd].compactMap({ $0 }) + replicatedImages where !FileManager.default.isReadableFile(atPath: file) {
            throw .missing("cannot read \(file)")
        }
    }

    /// The accelerator `auto` resolves to on this host.
    public var resolvedAccelerator: Accelerator {
        guard accelerator == .auto else { return accelerator }
        let flags = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let hardware = flags.split(separator: "\n").contains { line in
            line.hasPrefix("flags") && line.split(separator: " ").contains { $0 == "vmx" || $0 == "svm" }
        }
        return hardware && FileManager.default.isWritableFile(atPath: "/dev/kvm") ? .kvm : .tcg
    }
}
