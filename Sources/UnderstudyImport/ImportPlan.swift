import Foundation
import UnderstudyAgent
import UnderstudyProtocol
import UnderstudyQEMU

/// What importing a VM from libvirt or OVF amounts to, decided from the source file alone (and,
/// once `resolved`, from facts about its images): the VM as Understudy will run it, what was
/// taken over as it is, what changes and why, and what blocks protection. Pure: built by
/// `LibvirtDomainImport` and `OVFEnvelopeImport`, carried out by `VMImporter`.
public struct ImportPlan: Sendable, Equatable, Codable {
    public enum SourceKind: String, Sendable, Codable { case libvirt, ovf }
    public enum Firmware: String, Sendable, Codable { case bios, uefi }

    public var kind: SourceKind
    /// The VM's name in the source (libvirt's domain name, OVF's VirtualSystem).
    public var sourceName: String
    /// The Understudy VM id (`VMDescription.idRule`), from the name unless given.
    public var id: String
    public var memoryMiB: Int
    public var vcpus: Int
    public var machine: String
    public var firmware: Firmware = .bios
    /// The VM's own UEFI variable store (libvirt's <nvram>); nil: a copy of OVMF's template.
    public var uefiVarsSource: String?
    /// Filled in by `resolved`: the file copied into the output directory as the VM's store.
    public var uefiVarsCopiedFrom: String?
    public var kernel: String?
    public var initrd: String?
    public var commandLine: String?
    public var disks: [ImportedDisk] = []
    public var nics: [ImportedNIC] = []
    public var rng = false
    public var takenOver: [String] = []
    public var changes: [ImportChange] = []
    public var blockers: [ImportBlocker] = []

    public init(kind: SourceKind, sourceName: String, id: String, memoryMiB: Int, vcpus: Int, machine: String) {
        self.kind = kind
        self.sourceName = sourceName
        self.id = id
        self.memoryMiB = memoryMiB
        self.vcpus = vcpus
        self.machine = machine
    }

    /// Nothing blocks protection: the configuration can be written.
    public var isProtectable: Bool { blockers.isEmpty }

    mutating func block(_ subject: String, _ reason: String) { blockers.append(ImportBlocker(subject, reason)) }

    mutating func change(_ subject: String, _ what: String, because why: String) { changes.append(ImportChange(subject, what, because: why)) }
}

extension ImportPlan {
    /// At most this many NICs (one output gate and TAP each).
    public static let maximumNICs = GuestDevices.maximumNICs
    public static let maximumDisks = VMIdentity.maxDiskCount

    /// The VM's name made into an id: characters outside the rule become '-', runs of them one,
    /// leading ones dropped, at most 63 bytes. Nil when nothing usable is left.
    public static func sanitisedID(_ name: String) -> String? {
        var out = ""
        for scalar in name.unicodeScalars {
            let keep = scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || "._-".unicodeScalars.contains(scalar))
            if keep {
                out.unicodeScalars.append(scalar)
            } else if !out.isEmpty, out.last != "-" {
                out += "-"
            }
        }
        while let first = out.unicodeScalars.first, !(first.properties.isAlphabetic || ("0"..."9").contains(first)) { out.removeFirst() }
        out = String(out.prefix(63))
        while out.hasSuffix("-") { out.removeLast() }
        return VMDescription.isValidID(out) ? out : nil
    }

    /// The id for `name`, or `override` when the operator gave one; a change note when it differs
    /// from the name, a blocker when there is none.
    mutating func assignID(name: String, override: String?) {
        if let override {
            guard VMDescription.isValidID(override) else {
                block("--id \(override)", "not a VM id: use \(VMDescription.idRule)")
                return
            }
            id = override
            if override != name { change("VM id", "\"\(override)\" (given with --id) instead of \"\(name)\"", because: "the operator chose it") }
            return
        }
        guard let id = Self.sanitisedID(name) else {
            block("name \"\(name)\"", "leaves no VM id (\(VMDescription.idRule)): give one with --id")
            return
        }
        self.id = id
        if id != name { change("VM id", "\"\(id)\" instead of \"\(name)\"", because: "an id is \(VMDescription.idRule): it names files and QEMU options") }
    }

    /// Memory as the VM model takes it: whole MiB, a multiple of 2 MiB, 16 MiB to 1 TiB.
    mutating func assignMemory(bytes: UInt64, subject: String) {
        let twoMiB: UInt64 = 2 << 20
        guard bytes <= 1 << 40, case let rounded = (bytes + twoMiB - 1) / twoMiB * twoMiB, rounded >= 16 << 20 else {
            block(subject, "\(bytes) bytes of memory: the VM model takes 16 MiB to 1 TiB")
            return
        }
        memoryMiB = Int(rounded >> 20)
        if rounded != bytes {
            change(subject, "\(memoryMiB) MiB instead of \(bytes) bytes", because: "guest memory is a whole number of 2 MiB pages (rounded up)")
        } else {
            takenOver.append("memory \(memoryMiB) MiB")
        }
    }

    mutating func assignVCPUs(_ count: Int, subject: String) {
        guard (1...64).contains(count) else {
            block(subject, "\(count) vCPUs: the VM model takes 1 to 64")
            return
        }
        vcpus = count
        takenOver.append("\(count) vCPU\(count == 1 ? "" : "s")")
    }

    /// Adds a NIC with the MAC the source gave (nil: one derived from the id and its place).
    mutating func addNIC(mac: String?, connection: String?, subject: String) {
        guard nics.count < Self.maximumNICs else {
            block(subject, "more than \(Self.maximumNICs) NICs: the VM model has at most \(Self.maximumNICs) (one output gate each)")
            return
        }
        let index = nics.count
        let address: String
        if let mac {
            let lower = mac.lowercased()
            guard AgentConfiguration.isUnicastMAC(lower) else {
                block(subject, "\"\(mac)\" is not a unicast MAC address")
                return
            }
            address = lower
        } else {
            address = AgentConfiguration.defaultMAC(for: id, nic: index)
            change(subject, "MAC \(address)", because: "the source gives none; it is derived from the VM id, the same in both nodes' files")
        }
        nics.append(ImportedNIC(mac: address, tap: Self.tapName(id: id, index: index), connection: connection))
    }

    /// Adds a disk in guest order; its virtio name follows its place.
    mutating func addDisk(sourceName: String, source: String, format: String, capacity: UInt64?, subject: String) {
        guard disks.count < Self.maximumDisks else {
            block(subject, "more than \(Self.maximumDisks) disks: the VM model has at most \(Self.maximumDisks)")
            return
        }
        disks.append(ImportedDisk(target: Self.virtioName(disks.count), sourceName: sourceName, source: source, format: format, capacity: capacity))
    }

    /// vda, vdb, ...: what a Linux guest calls the n-th virtio-blk disk.
    static func virtioName(_ index: Int) -> String { "vd" + String(UnicodeScalar(UInt8(ascii: "a") + UInt8(index))) }

    /// "tap-ID-N" when that fits an interface name (15 bytes), else "tap" and a hash of the id.
    static func tapName(id: String, index: Int) -> String {
        let plain = "tap-\(id)-\(index)"
        if plain.utf8.count <= 15 { return plain }
        return "tap" + String(format: "%08x", fnv1a("\(id)") ) + "-\(index)"
    }

    private static func fnv1a(_ text: String) -> UInt32 {
        text.utf8.reduce(UInt32(2_166_136_261)) { ($0 ^ UInt32($1)) &* 16_777_619 }
    }
}
