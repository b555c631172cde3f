/// What an NBD client sees of the served image: its name, size and whether it may write, and
/// from these the checks every request must pass before it touches the image.
public struct NBDExport: Sendable, Equatable {
    /// Requests may start and end at any byte.
    public static let minimumBlockSize: UInt32 = 1
    /// The page size: smaller or unaligned writes cost the host a read-modify-write.
    public static let preferredBlockSize: UInt32 = 4096
    /// The longest READ or WRITE accepted (their data travels in one message and one buffer).
    /// TRIM and WRITE_ZEROES carry no data and may cover more.
    public static let maximumPayload: UInt32 = 32 << 20
    /// The longest export name the protocol allows.
    public static let maximumNameLength = 4096

    /// What clients ask for; the empty name reaches this export too.
    public var name: String
    /// Bytes in the export; every request must stay inside.
    public var size: UInt64
    /// Every change is refused with EPERM.
    public var isReadOnly: Bool

    public init(name: String, size: UInt64, isReadOnly: Bool) {
        self.name = name
        self.size = size
        self.isReadOnly = isReadOnly
    }

    /// What the export announces: flush, FUA, trim and write-zeroes are always supported.
    public var transmissionFlags: NBDTransmissionFlags {
        var flags: NBDTransmissionFlags = [.hasFlags, .sendFlush, .sendFUA, .sendTrim, .sendWriteZeroes]
        if isReadOnly { flags.insert(.readOnly) }
        return flags
    }

    /// Whether a client asking for `requested` gets this export. The empty name is the protocol's
    /// "default export", which is this one, the only one.
    func isNamed(_ requested: [UInt8]) -> Bool {
        requested.isEmpty || requested.elementsEqual(name.utf8)
    }

    /// Whether `request` may run, or the error to answer it with.
    public func check(_ request: NBDRequest) -> NBDRequestCheck {
        // The data of a refused write still arrives after its header and must be skipped.
        let payload = request.type == NBDCommand.write.rawValue ? Int(request.length) : 0
        guard let command = request.command else { return .reject(.invalidArgument, discard: payload) }
        // FUA is valid on every command (clients set it on reads too); NO_HOLE only on WRITE_ZEROES.
        let allowedFlags: NBDCommandFlags = command == .writeZeroes ? [.fua, .noHole] : [.fua]
        guard allowedFlags.isSuperset(of: request.flags) else { return .reject(.invalidArgument, discard: payload) }
        switch command {
        case .disconnect, .flush:
            // Offset and length are reserved here; nothing depends on them, so they are not checked.
            return .execute(command)
        case .read, .write:
            guard request.length > 0, request.length <= Self.maximumPayload else { return .reject(.invalidArgument, discard: payload) }
        case .trim, .writeZeroes:
            // Zero length is left unspecified by the protocol; it changes nothing, so it is refused
            // rather than reported as an empty change.
            guard request.length > 0 else { return .reject(.invalidArgument, discard: payload) }
        }
        if isReadOnly && command != .read { return .reject(.notPermitted, discard: payload) }
        let (end, overflow) = request.offset.addingReportingOverflow(UInt64(request.length))
        if overflow || end > size {
            // The spec asks for ENOSPC when a write runs past the end; a read or trim there is just invalid.
            let writes = command == .write || command == .writeZeroes
            return .reject(writes ? .noSpace : .invalidArgument, discard: payload)
        }
        return .execute(command)
    }
}
