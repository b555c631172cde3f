import UnderstudyProtocol
import UnderstudySystem
import UnderstudyTransport

/// How the backup listens and where it keeps the replica.
public struct BackupConfiguration: Sendable {
    public var nodeName: String
    public var listen: Endpoint
    public var tls: TLSConfiguration
    public var identity: VMIdentity
    public var replicaDirectory: String
    /// The replica disks, one per disk of the VM (default: in the replica directory, see `ReplicaStore`).
    public var replicaDisks: [String]
    /// Capabilities this backup implements and offers.
    public var capabilities: Capabilities
    /// Initial-sync batches received and waiting to be applied, at most; the receiver stops
    /// reading beyond. Checkpoints do not count: the queue also holds a primary's largest window
    /// (`PrimaryConfiguration.maximumEpochsInFlight`), so that the receiver keeps answering
    /// heartbeats while a slow replica works through them.
    public var applyQueueDepth: Int
    /// How often to send the primary a heartbeat; nil: never (tests of the bare protocol).
    public var heartbeatInterval: Duration?
    /// Where commits and heartbeat round trips are recorded; nil: nowhere.
    public var metrics: AgentMetrics?

    public init(nodeName: String, listen: Endpoint, tls: TLSConfiguration, identity: VMIdentity, replicaDirectory: String,
                replicaDisks: [String] = [], capabilities: Capabilities = .supported, applyQueueDepth: Int = 8) {
        self.replicaDisks = replicaDisks
        self.nodeName = nodeName
        self.listen = listen
        self.tls = tls
        self.identity = identity
        self.replicaDirectory = replicaDirectory
        self.capabilities = capabilities
        self.applyQueueDepth = applyQueueDepth
    }
}
