import Foundation
import UnderstudySystem

/// The peer a node follows instead of its configuration's (`peer.name`, `peer.address`) since a
/// spare claimed its VM (`<state_dir>/fleet-peer.json`): kept so that a restart protects to the
/// spare, not to the lost backup the file still names.
public struct FleetPeerRecord: Sendable {
    public struct Peer: Sendable, Codable, Equatable {
        public var name: String
        /// Nil: the peer listens nowhere the node knows (it cannot protect to it).
        public var address: String?
        /// Where it receives heartbeat datagrams; nil: no second path with it (and records written before it existed).
        public var udp: String?

        public init(name: String, address: String?, udp: String? = nil) {
            self.name = name
            self.address = address
            self.udp = udp
        }
    }

    public let path: String

    public init(directory: String) {
        path = "\(directory)/fleet-peer.json"
    }

    /// The recorded peer; nil when none was recorded.
    public func load() throws -> Peer? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        do {
            return try JSONDecoder().decode(Peer.self, from: data)
        } catch {
            throw HostCommand.Failure("\(path) is not a fleet peer record (remove it to use peer.name and peer.address): \(error)")
        }
    }

    public func save(_ peer: Peer) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        try DurableFile.replace(path, with: String(decoding: try encoder.encode(peer), as: UTF8.self))
    }
}
