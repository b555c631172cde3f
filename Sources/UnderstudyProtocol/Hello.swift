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
