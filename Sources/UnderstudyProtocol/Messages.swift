/// The protocol version this build speaks. A peer with another version is refused in the handshake.
public let understudyProtocolVersion: UInt16 = 1

/// The first 8 bytes of every HELLO payload, so that a peer of another protocol is recognised.
public let understudyMagic: [UInt8] = Array("UNDSTUDY".utf8)

/// Why a session was refused (REJECT) or ended (GOODBYE).
public enum CloseCode: UInt16, Sendable, CustomStringConvertible {
    case normal = 0
    case versionMismatch = 1
    case identityMismatch = 2
    case capabilityMismatch = 3
    case busy = 4
    case protocolError = 5
    case internalError = 6
    /// A planned switchover: the primary took a final checkpoint with the guest paused, which
    /// the backup acknowledged; the backup now activates the VM from it.
    case switchover = 7

    public var description: String {
        switch self {
        case .normal: "normal"
        case .versionMismatch: "version mismatch"
        case .identityMismatch: "identity mismatch"
        case .capabilityMismatch: "capability mismatch"
        case .busy: "busy"
        case .protocolError: "protocol error"
        case .internalError: "internal error"
        case .switchover: "switchover"
        }
    }
}

/// What the two agents must agree on before any page moves: which VM, how its memory is cut,
/// and how large its replicated disk is.
public struct VMIdentity: Sendable, Equatable, CustomStringConvertible {
    public static let maxIDLength = 128
    public static let diskSectorSize: UInt64 = 512
    public var id: String
    public var memorySize: UInt64
    public var pageSize: UInt32
    /// Bytes of the replicated disk; 0 when the VM has none.
    public var diskSize: UInt64

    public init(id: String, memorySize: UInt64, pageSize: UInt32 = 4096, diskSize: UInt64 = 0) {
        self.id = id
        self.memorySize = memorySize
        self.pageSize = pageSize
        self.diskSize = diskSize
    }

    public var pageCount: UInt64 { memorySize / UInt64(pageSize) }

    public var description: String {
        "\(id) (\(memorySize) bytes, \(pageSize)-byte pages" + (diskSize > 0 ? ", \(diskSize)-byte disk)" : ", no disk)")
    }

    /// Checks the identity is usable: a short id, a power-of-two page size, whole pages.
    public func validate() throws(ProtocolError) {
        guard !id.isEmpty, id.utf8.count <= VMIdentity.maxIDLength else {
            throw .malformed("VM id must be 1 to \(VMIdentity.maxIDLength) bytes, got \(id.utf8.count)")
        }
        guard pageSize >= 512, pageSize <= 65536, pageSize & (pageSize - 1) == 0 else {
            throw .malformed("page size \(pageSize) is not a power of two between 512 and 65536")
        }
        guard memorySize > 0, memorySize % UInt64(pageSize) == 0 else {
            throw .malformed("memory size \(memorySize) is not a positive multiple of the page size \(pageSize)")
        }
        guard diskSize % VMIdentity.diskSectorSize == 0 else {
            throw .malformed("disk size \(diskSize) is not a multiple of \(VMIdentity.diskSectorSize) bytes")
        }
    }

    /// Describes the first difference from `other`, nil when they match.
    public func mismatch(with other: VMIdentity) -> String? {
        if id != other.id { return "VM id is \"\(other.id)\", expected \"\(id)\"" }
        if memorySize != other.memorySize { return "memory size is \(other.memorySize), expected \(memorySize)" }
        if pageSize != other.pageSize { return "page size is \(other.pageSize), expected \(pageSize)" }
        if diskSize != other.diskSize { return "disk size is \(other.diskSize), expected \(diskSize)" }
        return nil
    }
}

/// Optional protocol features, negotiated in the handshake.
public struct Capabilities: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let lz4Pages = Capabilities(rawValue: 1 << 0)
    public static let xorDelta = Capabilities(rawValue: 1 << 1)
    public static let deviceState = Capabilities(rawValue: 1 << 2)
    public static let diskWrites = Capabilities(rawValue: 1 << 3)
    /// Each side answers a HEARTBEAT with HEARTBEAT_ECHO, so its sender can measure the round trip.
    public static let heartbeatEcho = Capabilities(rawValue: 1 << 4)
    /// After a lost connection the primary may send CATCH_UP_BEGIN and one catch-up checkpoint
    /// on top of the backup's committed replica instead of a full synchronisation.
    public static let catchUp = Capabilities(rawValue: 1 << 5)

    /// Everything this build implements.
    public static let supported: Capabilities = [.lz4Pages, .xorDelta, .deviceState, .diskWrites, .heartbeatEcho, .catchUp]

    public var description: String {
        let names: [(Capabilities, String)] = [
            (.lz4Pages, "lz4-pages"), (.xorDelta, "xor-delta"), (.deviceState, "device-state"), (.diskWrites, "disk-writes"),
            (.heartbeatEcho, "heartbeat-echo"), (.catchUp, "catch-up"),
        ]
        var parts = names.filter { contains($0.0) }.map(\.1)
        let unknown = rawValue & ~Capabilities.supported.rawValue
        if unknown != 0 { parts.append("unknown(0x\(String(unknown, radix: 16)))") }
        return parts.isEmpty ? "none" : parts.joined(separator: ",")
    }
}

/// Primary → backup, first frame of a session.
public struct Hello: Sendable, Equatable {
    public var version: UInt16
    public var identity: VMIdentity
    public var capabilities: Capabilities
    public var requiredCapabilities: Capabilities
    /// The sender's node name, for logs (authentication is the TLS certificate's job).
    public var nodeName: String

    public init(version: UInt16 = understudyProtocolVersion, identity: VMIdentity,
                capabilities: Capabilities = .supported, requiredCapabilities: Capabilities = .supported,
                nodeName: String) {
        self.version = version
        self.identity = identity
        self.capabilities = capabilities
        self.requiredCapabilities = requiredCapabilities
        self.nodeName = nodeName
    }
}

/// Backup → primary: the session is accepted with these capabilities.
public struct Welcome: Sendable, Equatable {
    public var version: UInt16
    public var capabilities: Capabilities
    /// The last epoch the backup's replica committed (0: none), for the operator's logs.
    public var committedEpoch: UInt64

    public init(version: UInt16 = understudyProtocolVersion, capabilities: Capabilities, committedEpoch: UInt64) {
        self.version = version
        self.capabilities = capabilities
        self.committedEpoch = committedEpoch
    }
}

/// Ends a session with a reason (REJECT during the handshake, GOODBYE afterwards).
public struct SessionClose: Sendable, Equatable {
    public var code: CloseCode
    public var message: String

    public init(code: CloseCode, message: String) {
        self.code = code
        self.message = message
    }
}

/// Start of initial synchronisation: the backup zeroes its replica memory and disk; disk content
/// follows as disk-write batches of epoch 0.
public struct SyncBegin: Sendable, Equatable {
    public var pageCount: UInt64
    public init(pageCount: UInt64) { self.pageCount = pageCount }
}

/// Totals that close a sync or a checkpoint; the receiver compares them with what it staged.
public struct ContentSummary: Sendable, Equatable {
    public var epoch: UInt64
    public var pageCount: UInt64
    public var deviceStateBytes: UInt64
    public var diskWriteCount: UInt64
    /// SHA-256 over the SHA-256 of each content frame, in order (see `EpochDigest`).
    public var digest: [UInt8]

    public init(epoch: UInt64, pageCount: UInt64, deviceStateBytes: UInt64 = 0, diskWriteCount: UInt64 = 0,
                digest: [UInt8]) {
        self.epoch = epoch
        self.pageCount = pageCount
        self.deviceStateBytes = deviceStateBytes
        self.diskWriteCount = diskWriteCount
        self.digest = digest
    }
}

/// A chunk of the device-state blob of one epoch. Chunks arrive in order.
public struct DeviceStateChunk: Sendable, Equatable {
    public var epoch: UInt64
    public var offset: UInt64
    public var data: [UInt8]

    public init(epoch: UInt64, offset: UInt64, data: [UInt8]) {
        self.epoch = epoch
        self.offset = offset
        self.data = data
    }
}

/// Liveness and round-trip probe; any frame counts as a sign of life.
public struct Heartbeat: Sendable, Equatable {
    public var sequence: UInt64
    /// Sender's monotonic clock in nanoseconds (only meaningful to the sender).
    public var senderTime: UInt64

    public init(sequence: UInt64, senderTime: UInt64) {
        self.sequence = sequence
        self.senderTime = senderTime
    }
}

/// Every frame of protocol version 1, decoded.
public enum Message: Sendable, Equatable {
    case hello(Hello)
    case welcome(Welcome)
    case reject(SessionClose)
    case syncBegin(SyncBegin)
    case syncPages(PageBatch)
    case syncEnd(ContentSummary)
    /// Instead of SYNC_BEGIN (catch-up capability): the replica stays as committed at
    /// `baseEpoch`, and the next checkpoint, whatever its number, brings it up to date.
    case catchUpBegin(baseEpoch: UInt64)
    case checkpointBegin(epoch: UInt64)
    case pages(PageBatch)
    case deviceState(DeviceStateChunk)
    case diskWrites(DiskWriteBatch)
    case checkpointEnd(ContentSummary)
    case ack(epoch: UInt64)
    case heartbeat(Heartbeat)
    /// A HEARTBEAT sent back unchanged (heartbeat-echo capability): its sender's round trip.
    case heartbeatEcho(Heartbeat)
    case goodbye(SessionClose)
}
