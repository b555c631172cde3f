import CUnderstudyShims

/// One datagram of the second heartbeat path, authenticated with a key both nodes exported from
/// their replication session's TLS (`TLSStream.exportKeyingMaterial`): only a node that holds
/// the session can make one, so forged datagrams cannot make a dead peer look alive.
///
/// Wire form (text, one datagram): `USHB2 <vm> <sender> <sequence> <mac>`, where `<mac>` is the
/// lowercase hex HMAC-SHA256, under the key, of everything before the last space.
public struct HeartbeatDatagram: Sendable, Equatable {
    /// The TLS exporter label the key is derived with (RFC 5705 / RFC 8446 section 7.5).
    public static let exporterLabel = "EXPORTER-understudy-heartbeat-v2"
    public static let keyLength = 32
    static let magic = "USHB2"
    /// Longer datagrams are not ours: the receiver reads at most this many bytes.
    public static let maximumLength = 512

    public var vm: String
    public var sender: String
    public var sequence: UInt64

    public init(vm: String, sender: String, sequence: UInt64) {
        self.vm = vm
        self.sender = sender
        self.sequence = sequence
    }

    private var body: String { "\(Self.magic) \(vm) \(sender) \(sequence)" }

    /// The datagram's bytes, authenticated under `key`.
    public func encoded(key: [UInt8]) -> [UInt8] {
        Array("\(body) \(Self.mac(Array(body.utf8), key: key).hexString)".utf8)
    }

    /// Why a received datagram was not taken as a sign of life.
    public enum Rejection: Error, Sendable, Equatable {
        /// Not of this form (another protocol, an older agent's unauthenticated heartbeat, truncated).
        case malformed
        /// About another VM, or from another node than the peer.
        case notOurPeer
        /// The MAC does not match: forged, or made under another session's key.
        case badAuthentication
    }

    /// Parses and authenticates `bytes` under `key`; it must be about `vm` from `sender`.
    public static func verify(_ bytes: [UInt8], key: [UInt8], vm: String, sender: String) throws(Rejection) -> HeartbeatDatagram {
        guard bytes.count <= maximumLength, let text = String(validating: bytes, as: UTF8.self) else { throw .malformed }
        let fields = text.split(separator: " ", omittingEmptySubsequences: false)
        guard fields.count == 5, fields[0] == magic, let sequence = UInt64(fields[3]), fields[4].utf8.count == 64 else { throw .malformed }
        guard fields[1] == vm, fields[2] == sender else { throw .notOurPeer }
        let datagram = HeartbeatDatagram(vm: vm, sender: sender, sequence: sequence)
        let expected = mac(Array(datagram.body.utf8), key: key).hexString
        // Every byte is compared, so the time taken says nothing about where a forgery differs.
        let difference = zip(expected.utf8, fields[4].utf8).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) }
        guard difference == 0 else { throw .badAuthentication }
        return datagram
    }

    static func mac(_ data: [UInt8], key: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        let ok = us_hmac_sha256(key, key.count, data, data.count, &out)
        precondition(ok == 1, "HMAC-SHA256 is always available in OpenSSL 3")
        return out
    }
}

extension Array where Element == UInt8 {
    fileprivate var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(count * 2)
        for byte in self {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 15)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
