/// Where a node's TLS identity lives and whom it expects on the other end.
public struct TLSConfiguration: Sendable, Equatable {
    /// PEM certificate of this node (issued by the CA).
    public var certificatePath: String
    /// PEM private key of this node; must not be readable by group or others.
    public var privateKeyPath: String
    /// PEM certificate of the CA that issued both nodes' certificates.
    public var caPath: String
    /// The name the peer's certificate must carry (subjectAltName DNS).
    public var expectedPeerName: String

    public init(certificatePath: String, privateKeyPath: String, caPath: String, expectedPeerName: String) {
        self.certificatePath = certificatePath
        self.privateKeyPath = privateKeyPath
        self.caPath = caPath
        self.expectedPeerName = expectedPeerName
    }

    /// The files `understudy certs init` writes for `node` in `directory`, expecting `peer`.
    public init(directory: String, node: String, peer: String) {
        self.init(certificatePath: "\(directory)/\(node).pem", privateKeyPath: "\(directory)/\(node).key",
                  caPath: "\(directory)/ca.pem", expectedPeerName: peer)
    }
}
