import UnderstudyProtocol

/// The release this build belongs to, and the wire protocol it speaks.
public enum UnderstudyVersion {
    public static let release = "0.1.0"
    public static var summary: String { "understudy \(release) (replication protocol v\(understudyProtocolVersion))" }
}
