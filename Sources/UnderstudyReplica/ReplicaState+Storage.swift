import Foundation
import UnderstudyProtocol

/// Saving and restoring `ReplicaState`: the file is written whole to a temporary name, synced and
/// renamed over the old one, so a reader sees either the old or the new state, never a mix, after
/// a killed process or a power cut alike.
///
/// Layout: magic "USSTATE4", generation u64, phase u8, committed epoch u64, VM id string,
/// memory size u64, page size u32, disk count u16 and each disk's size u64, device-state length
/// u32 and bytes, reset reason string (empty: none), SHA-256 of everything before. Earlier files
/// are still read: "USSTATE3" has one disk size u64 (0: no disk) instead of the list, "USSTATE2"
/// is USSTATE3 without the reset reason. A replica of at most one disk is still written as
/// USSTATE3, so that the previous version can read it after a rollback.
extension ReplicaState {
    static let magic = Array("USSTATE4".utf8)
    static let magicWithOneDisk = Array("USSTATE3".utf8)
    static let magicWithoutResetReason = Array("USSTATE2".utf8)

    func encoded() -> [UInt8] {
        var w = WireWriter(capacity: 128 + deviceState.count)
        // A one-disk size of 0 would read back as "no disk": such a (never valid) list keeps the new layout.
        let oneDisk = identity.diskSizes.isEmpty || identity.diskSizes.count == 1 && identity.diskSizes[0] > 0
        w.write(bytes: oneDisk ? ReplicaState.magicWithOneDisk : ReplicaState.magic)
        w.write(generation)
        w.write(phase.rawValue)
        w.write(committedEpoch)
        w.write(string: identity.id)
        w.write(identity.memorySize)
        w.write(identity.pageSize)
        if oneDisk {
            w.write(identity.diskSize)
        } else {
            w.write(UInt16(identity.diskSizes.count))
            for size in identity.diskSizes { w.write(size) }
        }
        w.write(UInt32(deviceState.count))
        w.write(bytes: deviceState)
        w.write(string: resetReason ?? "")
        w.write(bytes: EpochDigest.sha256(w.bytes))
        return w.bytes
    }

    init(decoding bytes: [UInt8], path: String) throws(ReplicaError) {
        let magic = Array(bytes.prefix(8))
        guard bytes.count > EpochDigest.size, [ReplicaState.magic, ReplicaState.magicWithOneDisk, ReplicaState.magicWithoutResetReason].contains(magic) else {
            throw .corrupt("\(path) is not an Understudy replica state file of this version")
        }
        let body = Array(bytes.dropLast(EpochDigest.size))
        guard EpochDigest.sha256(body) == Array(bytes.suffix(EpochDigest.size)) else {
            throw .corrupt("\(path) fails its checksum")
        }
        do throws(ProtocolError) {
            var r = WireReader(body, offset: 8, context: path)
            let generation = try r.readUInt64()
            guard let phase = Phase(rawValue: try r.readUInt8()) else { throw .malformed("unknown phase") }
            let epoch = try r.readUInt64()
            var identity = VMIdentity(id: try r.readString(), memorySize: try r.readUInt64(), pageSize: try r.readUInt32(), diskSizes: [])
            if magic == ReplicaState.magic {
                for _ in 0..<Int(try r.readUInt16()) { identity.diskSizes.append(try r.readUInt64()) }
            } else {
                identity = VMIdentity(id: identity.id, memorySize: identity.memorySize, pageSize: identity.pageSize, diskSize: try r.readUInt64())
            }
            let device = try r.readBytes(Int(try r.readUInt32()))
            let reason = magic == ReplicaState.magicWithoutResetReason ? "" : try r.readString()
            try r.expectEnd()
            self.init(identity: identity, generation: generation, phase: phase, committedEpoch: epoch, deviceState: device,
                      resetReason: reason.isEmpty ? nil : reason)
        } catch {
            throw .corrupt("\(path): \(error)")
        }
    }

    /// Writes the state to `path` atomically and durably: a temporary file, synced before it is
    /// renamed into place (else a power cut may leave the new name on empty content), then the
    /// directory synced (else the rename itself may be lost). Safe against the process being
    /// killed and against the host losing power: after a cut the file is the old state or this one.
    func save(to path: String, storage: ReplicaStorage) throws(ReplicaError) {
        let temporary = path + ".tmp"
        try storage.write(encoded(), to: temporary)
        try storage.sync(temporary)
        try storage.rename(temporary, to: path)
        try storage.syncDirectory(URL(fileURLWithPath: path).deletingLastPathComponent().path)
    }

    /// Reads the state at `path`; nil when there is none yet.
    static func load(from path: String) throws(ReplicaError) -> ReplicaState? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else { throw .io(operation: "read", path: path, errno: errno) }
        return try ReplicaState(decoding: Array(data), path: path)
    }
}
