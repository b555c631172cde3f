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
