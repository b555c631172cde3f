import Foundation
import UnderstudyProtocol

/// Saving and restoring `ReplicaState`: the file is written whole to a temporary name and renamed
/// over the old one, so a reader sees either the old or the new state, never a mix.
///
/// Layout: magic "USSTATE2", generation u64, phase u8, committed epoch u64, VM id string,
/// memory size u64, page size u32, disk size u64, device-state length u32 and bytes, SHA-256 of
/// everything before.
extension ReplicaState {
    static let magic = Array("USSTATE2".utf8)

    func encoded() -> [UInt8] {
        var w = WireWriter(capacity: 128 + deviceState.count)
        w.write(bytes: ReplicaState.magic)
        w.write(generation)
        w.write(phase.rawValue)
        w.write(committedEpoch)
        w.write(string: identity.id)
        w.write(identity.memorySize)
        w.write(identity.pageSize)
        w.write(identity.diskSize)
        w.write(UInt32(deviceState.count))
        w.write(bytes: deviceState)
        w.write(bytes: EpochDigest.sha256(w.bytes))
        return w.bytes
    }

    init(decoding bytes: [UInt8], path: String) throws(ReplicaError) {
        guard bytes.count > EpochDigest.size, Array(bytes.prefix(8)) == ReplicaState.magic else {
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
            let identity = VMIdentity(id: try r.readString(), memorySize: try r.readUInt64(), pageSize: try r.readUInt32(),
                                      diskSize: try r.readUInt64())
            let device = try r.readBytes(Int(try r.readUInt32()))
            try r.expectEnd()
            self.init(identity: identity, generation: generation, phase: phase, committedEpoch: epoch, deviceState: device)
        } catch {
            throw .corrupt("\(path): \(error)")
        }
    }

    /// Writes the state to `path` atomically (temporary file, rename): safe against the process being killed.
    func save(to path: String) throws(ReplicaError) {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .io(operation: "create", path: temporary, errno: errno) }
        let bytes = encoded()
        let written = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        let writeErrno = errno
        close(fd)
        guard written == bytes.count else { throw .io(operation: "write", path: temporary, errno: written < 0 ? writeErrno : ENOSPC) }
        guard rename(temporary, path) == 0 else { throw .io(operation: "rename into place", path: path, errno: errno) }
    }

    /// Reads the state at `path`; nil when there is none yet.
    static func load(from path: String) throws(ReplicaError) -> ReplicaState? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else { throw .io(operation: "read", path: path, errno: errno) }
        return try ReplicaState(decoding: Array(data), path: path)
    }
}
